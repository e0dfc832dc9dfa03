"""Safe production defaults: `serve` refuses a setup where cursors would break, a rotated secret key
keeps stored cursors working, stored sync cursors survive a restart (the demo's too), and GraphiQL is off
unless asked."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from api.operators.cli import app as cli_app
from api.operators.cli import demo_secret_key
from api.operators.server import unsafe_setup
from api.settings import Settings, get_settings
from tests.server_process import LOOPBACK, PARTNER_API, partner_api_env, running_server

FEED = """query($p: ID!, $since: String) { appointmentChanges(practiceId: $p, first: 5, since: $since) {
  edges { node { appointmentId } } pageInfo { endCursor } } }"""


@pytest.mark.parametrize(
    ("database_url", "workers", "refused"),
    [
        ("sqlite:///demo.db", 1, False),  # the embedded demo: one process, cursors live as long as it
        ("sqlite:///demo.db", 2, True),
        ("postgresql://api@db/partners", 1, True),
        ("postgresql://api@db/partners", 4, True),
    ],
)
def test_serve_refuses_several_workers_or_postgresql_without_a_secret_key(database_url, workers, refused):
    without = Settings(database_url=database_url, secret_key="")
    with_key = Settings(database_url=database_url, secret_key="s3cret")
    assert (unsafe_setup(without, workers) is not None) is refused
    assert unsafe_setup(with_key, workers) is None


def test_the_command_line_says_why_and_exits(monkeypatch):
    monkeypatch.setenv("PARTNER_API_DATABASE_URL", "postgresql://api@127.0.0.1:1/none")
    monkeypatch.delenv("PARTNER_API_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["serve", "--workers", "2"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "PARTNER_API_SECRET_KEY is required with 2 workers" in result.output


def test_graphiql_is_off_by_default_in_the_settings():
    """`demo` turns it on (api/operators/cli.py), `serve` only with --graphiql or PARTNER_API_GRAPHIQL=true."""
    assert Settings(_env_file=None).graphiql is False  # type: ignore[call-arg]


def _sync(base: str, key: str, practice: str, since: str | None) -> httpx.Response:
    return httpx.post(
        f"{base}/graphql",
        json={"query": FEED, "variables": {"p": practice, "since": since}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _serving(database_url: str, **settings: str):
    env = partner_api_env(database_url, **settings)
    return running_server(lambda port: [PARTNER_API, "serve", "--host", LOOPBACK, "--port", str(port)], env)


def test_a_stored_sync_cursor_survives_a_restart_and_a_key_rotation(database_url, world):
    key, practice = world.keys["full"], world.practice_id("A")
    with _serving(database_url, secret_key="first") as server:
        stored = _sync(server.base, key, practice, None).json()["data"]["appointmentChanges"]["pageInfo"]["endCursor"]
        assert stored
        graphiql = httpx.get(f"{server.base}/graphql", headers={"Accept": "text/html"})
        assert graphiql.status_code == 404  # `serve` serves no GraphiQL unless asked
    with _serving(database_url, secret_key="first") as server:  # a restart, same key
        after_restart = _sync(server.base, key, practice, stored)
    assert after_restart.status_code == 200 and "errors" not in after_restart.json(), after_restart.text
    with _serving(database_url, secret_key="second", secret_key_previous="first") as server:  # rotated
        rotated = _sync(server.base, key, practice, stored)
        assert rotated.status_code == 200 and "errors" not in rotated.json(), rotated.text
        renewed = rotated.json()["data"]["appointmentChanges"]["pageInfo"]["endCursor"]
    with _serving(database_url, secret_key="second") as server:  # the grace period over
        expired = _sync(server.base, key, practice, stored)
        fresh = _sync(server.base, key, practice, renewed)
    assert expired.json()["errors"][0]["message"] == "Invalid cursor."
    assert fresh.status_code == 200 and "errors" not in fresh.json(), fresh.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_graphiql_flag_turns_it_on(database_url, world):
    env = partner_api_env(database_url, secret_key="k")
    command = [PARTNER_API, "serve", "--graphiql", "--host", LOOPBACK, "--port"]
    with running_server(lambda port: [*command, str(port)], env) as server:
        page = httpx.get(f"{server.base}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "GraphiQL" in page.text


def test_the_demo_keeps_one_secret_key_across_its_restarts(tmp_path):
    """`make demo` sets no PARTNER_API_SECRET_KEY: its cursors survive a restart all the same."""
    kept = tmp_path / "demo-secret-key"
    first = demo_secret_key(kept)
    assert len(first) >= 43 and demo_secret_key(kept) == first
    assert kept.stat().st_mode & 0o777 == 0o600
