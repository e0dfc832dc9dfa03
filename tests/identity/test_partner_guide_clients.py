"""The partner guide's OAuth clients run as written: each language's key generation, then, once the
operator has registered the JWKS it wrote, its client, which gets a DPoP-bound token from a served
API and reads `viewer` with it, while the partner's API key is refused (it requires tokens)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server_process import LOOPBACK, PARTNER_API, partner_api_env, running_server

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "partner-guide.md").read_text()
BLOCK = re.compile(r"```(?:python|javascript)\n(?:#|//) file: (\S+)\n(.*?)```", re.S)
FILES = dict(BLOCK.findall(GUIDE))
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"
LANGUAGES = {"python": ("keygen.py", "client.py", [sys.executable]), "node": ("keygen.mjs", "client.mjs", ["node"])}


def test_the_guide_has_both_clients():
    assert set(FILES) == {"keygen.py", "client.py", "keygen.mjs", "client.mjs"}


@pytest.fixture
def served(database_url, world):
    def command(port: int) -> list[str]:
        return [PARTNER_API, "serve", "--host", LOOPBACK, "--port", str(port)]

    with running_server(command, partner_api_env(database_url, secret_key="guide")) as server:
        yield server.base


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_the_guides_client_gets_a_token_and_reads(served, world, cli, tmp_path, language):
    keygen, client, runner = LANGUAGES[language]
    if language == "node":
        (tmp_path / "node_modules").symlink_to(NODE_MODULES)  # jose, installed by `make test` (npm ci)
    for name in (keygen, client):
        (tmp_path / name).write_text(FILES[name])

    def run(name: str, **env: str) -> str:
        done = subprocess.run(
            [*runner, name], cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", **env},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run(keygen)
    jwks = json.loads((tmp_path / "jwks.json").read_text())
    assert "d" not in jwks["keys"][0] and "d" in json.loads((tmp_path / "client-key.json").read_text())
    registered = cli("client", "register", "full", "--jwks", str(tmp_path / "jwks.json"), "--mode", "open")
    client_id = re.search(r"client_[0-9a-f]{16}", registered.output).group(0)
    cli("partner", "require-tokens", "full")  # and its API key is refused, as in production

    data = json.loads(run(client, PARTNER_API_URL=served, PARTNER_API_CLIENT_ID=client_id))
    assert data["viewer"]["name"] == "full"
    assert [g["practiceName"] for g in data["viewer"]["grants"]] == ["A"]
    key = {"Authorization": f"Bearer {world.keys['full']}"}
    refused = httpx.post(f"{served}/graphql", json={"query": "{ viewer { name } }"}, headers=key)
    assert refused.status_code == 401 and "only OAuth access tokens" in refused.text
