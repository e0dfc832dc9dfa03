"""Unconfigured, the OAuth issuer is the URL the request named when it names this server, else the
address the connection reached (api/identity/token_authentication.py `issuer_of`): never a name of
another server, which let an assertion made for that server be accepted here (helper 50); and
`localhost` works where the server listens on 127.0.0.1, as partners' own clients call it (helper 51)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from api.identity.token_authentication import issuer_of


def request(host: str, server: tuple[str, int | None] | None, scheme: str = "http") -> Request:
    return Request({
        "type": "http", "method": "POST", "path": "/oauth/token", "root_path": "", "query_string": b"",
        "scheme": scheme, "server": server, "headers": [(b"host", host.encode())],
    })  # fmt: skip


@pytest.mark.parametrize(
    ("host", "server", "scheme", "issuer"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000), "http", "http://127.0.0.1:8000"),
        ("localhost:8000", ("127.0.0.1", 8000), "http", "http://localhost:8000"),
        ("[::1]:8000", ("::1", 8000), "http", "http://[::1]:8000"),
        ("evil.example", ("127.0.0.1", 8000), "http", "http://127.0.0.1:8000"),
        ("evil.example:8000", ("127.0.0.1", 8000), "https", "https://127.0.0.1:8000"),
        ("localhost:9999", ("127.0.0.1", 8000), "http", "http://127.0.0.1:8000"),  # another port: another server
        ("api.internal", ("10.0.0.5", 80), "http", "http://10.0.0.5"),
        ("testserver", ("testserver", None), "http", "http://testserver"),
        ("localhost", ("/run/api.sock", None), "http", "http://localhost"),  # a unix socket
        ("anything", None, "http", "http://localhost"),
    ],
)
def test_an_unconfigured_issuer_is_never_another_servers_name(host, server, scheme, issuer):
    assert issuer_of("", request(host, server, scheme)) == issuer


def test_a_configured_issuer_is_the_issuer_whatever_the_request():
    assert issuer_of("https://api.example.org/", request("evil.example", ("10.0.0.5", 80))) == "https://api.example.org"
