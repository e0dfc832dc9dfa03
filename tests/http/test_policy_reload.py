"""`partner-api policy reload` and SIGHUP put a checked policy in force on every worker of a running
server, without a restart; a policy that fails `policy check` is never loaded."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from authz.engine import POLICY_DIR
from tests.server_process import LOOPBACK, PARTNER_API, Server, partner_api_env, running_server, wait_for
from tests.world import World, window_args

PHONES = """query($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 3) { edges { node { patient { phone } } } } }"""
# The change a policy author makes: the identity scope now opens the phone too.
PHONE_WITH_IDENTITY = '\nfield_needs_scope("Patient.phone", "patients:identity");\n'
# A policy that fails `policy check` (a field no record has): it must never be loaded.
BROKEN = (
    'holds(partner, "appointments:read", appointment);',
    'holds(partner, "appointments:read", appointment) and appointment.source_partner = partner.id;',
)
REQUESTS = 16  # on separate connections, spread over the workers


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "policy"
    directory.mkdir()
    for source in POLICY_DIR.glob("*.polar"):
        shutil.copy(source, directory / source.name)
    return directory


@pytest.fixture
def serving(database_url: str, world: World, policy_dir: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    # Several workers share a database on PostgreSQL; SQLite is the single-process default.
    workers = "1" if database_url.startswith("sqlite") else "2"
    env = partner_api_env(database_url, secret_key="shared", policy_dir=str(policy_dir))

    def command(port: int) -> list[str]:
        return [PARTNER_API, "serve", "--host", LOOPBACK, "--port", str(port), "--workers", workers]

    with running_server(command, env) as server:
        yield server, env
    # Reloading never restarted a worker.
    assert server.output.count("Started server process") == int(workers), server.output


def phones_readable(server: Server, world: World) -> list[bool]:
    """For each request (each on its own connection): whether the no-contact partner read the phones."""
    payload = {"query": PHONES, "variables": {"p": world.practice_id("A"), **window_args()}}
    headers = {"Authorization": f"Bearer {world.keys['no-contact']}"}
    answers = []
    for _ in range(REQUESTS):
        with httpx.Client(base_url=server.base, timeout=30) as client:
            body = client.post("/graphql", json=payload, headers=headers).json()
        phones = [edge["node"]["patient"]["phone"] for edge in body["data"]["appointments"]["edges"]]
        assert phones and (all(phones) or not any(phones)), body
        answers.append(all(phones))
    return answers


def reload(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PARTNER_API, "policy", "reload"], env=env, capture_output=True, text=True, timeout=120)


def test_reload_puts_a_checked_policy_in_force_on_every_worker_and_refuses_a_broken_one(serving, world, policy_dir):
    server, env = serving
    assert not any(phones_readable(server, world))
    fields = policy_dir / "fields.polar"
    fields.write_text(fields.read_text() + PHONE_WITH_IDENTITY)
    assert not any(phones_readable(server, world))  # an edited file is not loaded by itself

    reloaded = reload(env)
    assert reloaded.returncode == 0, reloaded.stderr
    assert "in force on every worker from its next request" in reloaded.stdout
    assert all(phones_readable(server, world))  # every request, on every worker

    policy = policy_dir / "policy.polar"
    policy.write_text(policy.read_text().replace(*BROKEN))
    refused = reload(env)
    assert refused.returncode == 1
    assert (
        f"{policy}:" in refused.stderr and "no class the policy can read has a field 'source_partner'" in refused.stderr
    )
    assert "not loaded" in refused.stderr and "keeps serving" in refused.stderr
    assert all(phones_readable(server, world))  # the policy in force keeps serving, unchanged


def test_sighup_reloads_the_policy_and_keeps_the_old_one_when_the_new_fails_check(serving, world, policy_dir):
    server, _ = serving
    fields = policy_dir / "fields.polar"
    original = fields.read_text()
    fields.write_text(original + PHONE_WITH_IDENTITY)
    os.kill(server.pid, signal.SIGHUP)
    # The arbiter handles signals in its loop: wait until the release reached the workers.
    wait_for(lambda: all(phones_readable(server, world)), 60, "SIGHUP did not put the new policy in force")

    policy = policy_dir / "policy.polar"
    policy.write_text(policy.read_text().replace(*BROKEN))
    fields.write_text(original)  # would close the phone again, but comes with a broken file
    os.kill(server.pid, signal.SIGHUP)
    wait_for(lambda: "not loaded" in server.printed(), 60, "the arbiter did not handle the second SIGHUP")
    assert "no class the policy can read has a field 'source_partner'" in server.printed()
    assert all(phones_readable(server, world))  # the policy in force keeps serving, unchanged

    # A file that is not UTF-8 is refused as well: its decoding error stopped the arbiter and every worker.
    policy.write_bytes(b"allow(_, _, _) if false;\n# caf\xe9\n")
    os.kill(server.pid, signal.SIGHUP)
    wait_for(lambda: "not UTF-8" in server.printed(), 60, "the arbiter did not handle the third SIGHUP")
    assert all(phones_readable(server, world))


def test_a_sighup_the_database_cannot_serve_leaves_the_arbiter_running(tmp_path):
    """The release is written to the database: locked past its busy timeout, or away, the arbiter
    logs it and keeps the policy in force (gunicorn's arbiter exits on any exception of its loop)."""
    from types import SimpleNamespace

    from api.operators.server import PolicyArbiter
    from api.settings import Settings

    arbiter = PolicyArbiter.__new__(PolicyArbiter)  # its signal handler alone: no server
    arbiter.app = SimpleNamespace(settings=Settings(database_url=f"sqlite:///{tmp_path}/no/such/dir/x.db"))
    arbiter.handle_hup()  # raised OperationalError


def test_serve_refuses_to_start_on_a_policy_that_fails_check(database_url, policy_dir):
    policy = policy_dir / "policy.polar"
    policy.write_text(policy.read_text().replace(*BROKEN))
    env = partner_api_env(database_url, secret_key="shared", policy_dir=str(policy_dir))
    started = subprocess.run(
        [PARTNER_API, "serve", "--host", LOOPBACK, "--port", "1"], env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 1
    assert "is refused" in started.stderr and "'source_partner'" in started.stderr
