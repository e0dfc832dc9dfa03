"""The operators' OAuth commands: `client register|add-keys|retire-key|revoke|list`,
`partner require-tokens`, `oauth rotate-signing-key|retire-signing-key`, `exposure --client`."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from api.settings import get_settings
from tests.oauth_client import SigningKey, jwks


def test_register_rotate_and_revoke_a_client(cli, world, tmp_path):
    first, second = SigningKey("2026-11"), SigningKey("2026-12", "RS384")
    (tmp_path / "jwks.json").write_text(json.dumps(jwks(first)))
    (tmp_path / "next.json").write_text(json.dumps(jwks(second)))
    registered = cli("client", "register", "full", "--jwks", str(tmp_path / "jwks.json"))
    assert registered.exit_code == 0, registered.output
    client_id = re.search(r"client_[0-9a-f]{16}", registered.output).group(0)
    assert "live keys: 2026-11" in registered.output

    added = cli("client", "add-keys", client_id, "--jwks", str(tmp_path / "next.json"))
    assert "live keys: 2026-11, 2026-12" in added.output
    again = cli("client", "add-keys", client_id, "--jwks", str(tmp_path / "next.json"))
    assert again.exit_code == 1 and "already registered" in again.output
    retired = cli("client", "retire-key", client_id, "2026-11")
    assert "live keys: 2026-12" in retired.output
    listed = cli("client", "list", "full")
    assert client_id in listed.output and "active" in listed.output and "kids 2026-12" in listed.output
    assert cli("client", "revoke", client_id).exit_code == 0
    assert "revoked" in cli("client", "list", "full").output
    # The exposure report narrows to the client (its requests are under its credential key).
    exposure = cli("exposure", "--partner", "full", "--client", client_id)
    assert exposure.exit_code == 0, exposure.output
    unknown = cli("exposure", "--partner", "full", "--client", "client_0000000000000000")
    assert unknown.exit_code == 1 and "no OAuth client" in unknown.output


def test_register_refuses_a_bad_jwks(cli, world, tmp_path):
    private = {"keys": [{**SigningKey("k").key.as_dict(private=True), "kid": "k"}]}
    (tmp_path / "private.json").write_text(json.dumps(private))
    refused = cli("client", "register", "full", "--jwks", str(tmp_path / "private.json"))
    assert refused.exit_code == 1 and "private key" in refused.output
    neither = cli("client", "register", "full")
    assert neither.exit_code == 1 and "--jwks FILE or --jwks-url URL" in neither.output


def test_require_tokens_and_signing_key_rotation(cli, world):
    assert "access tokens only" in cli("partner", "require-tokens", "full").output
    assert "API keys accepted" in cli("partner", "require-tokens", "full", "--off").output
    assert "bound to a DPoP key only, API keys refused" in cli("partner", "require-dpop", "full").output
    still = cli("partner", "require-tokens", "full", "--off").output  # DPoP required: keys stay refused
    assert "API keys refused" in still and "require-dpop --off" in still
    assert "bearer access tokens accepted, API keys accepted" in cli("partner", "require-dpop", "full", "--off").output
    first = re.search(r"new signing key (\w+)", cli("oauth", "rotate-signing-key").output).group(1)
    only = cli("oauth", "retire-signing-key", first)
    assert only.exit_code == 1 and "only live signing key" in only.output
    cli("oauth", "rotate-signing-key")
    assert cli("oauth", "retire-signing-key", first).exit_code == 0


def test_rotation_needs_the_servers_secret(cli, world, monkeypatch):
    """It seals the new key (api/identity/key_seal.py): without the secret, no server could open it."""
    monkeypatch.delenv("PARTNER_API_SECRET_KEY")
    get_settings.cache_clear()
    refused = cli("oauth", "rotate-signing-key")
    assert refused.exit_code == 1 and "PARTNER_API_SECRET_KEY is unset" in refused.output
    assert "Traceback" not in refused.output


def test_register_reads_a_jwks_url(cli, world):
    """The JWKS is read once, by the command: requests never make the server fetch anything."""
    document = json.dumps(jwks(SigningKey("served"))).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/jwks.json"
        registered = cli("client", "register", "full", "--jwks-url", url)
    finally:
        server.shutdown()
    assert registered.exit_code == 0, registered.output
    assert "live keys: served" in registered.output
