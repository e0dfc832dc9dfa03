"""A partner's OAuth client for tests and benchmarks: its key pairs, its signed assertions and
DPoP proofs, made with joserfc as a partner's code would make them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.data.models import KeyMode
from api.operators import oauth_clients

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_URL = "http://testserver/oauth/token"
GRAPHQL_URL = "http://testserver/graphql"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """A client's key pair, named by its kid."""

    def __init__(self, kid: str, alg: str = "ES384") -> None:
        self.kid, self.alg = kid, alg
        self.key = RSAKey.generate_key(2048) if alg.startswith("RS") else ECKey.generate_key("P-384")

    def public_jwk(self) -> dict[str, Any]:
        return {**self.key.as_dict(private=False), "kid": self.kid, "alg": self.alg}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode({"alg": self.alg, "kid": self.kid, **header}, claims, self.key, algorithms=[self.alg])


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys]}


def claims(client_id: str, aud: str = TOKEN_URL, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 120, "iat": now, "jti": uuid.uuid4().hex}
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def unsigned(header: dict[str, Any], body: dict[str, Any]) -> str:
    """`alg: none`: no signature at all."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}."


def hmac_signed(secret: bytes, body: dict[str, Any], kid: str) -> str:
    """HS256 with `secret` (the confusion attack: the public key used as an HMAC secret)."""
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{b64(json.dumps(body).encode())}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def token_form(assertion: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }


class DPoPKey:
    """A client's proof-of-possession key (ES256 by default, as most DPoP clients use)."""

    def __init__(self, alg: str = "ES256", rsa_bits: int = 2048) -> None:
        self.alg = alg
        self.key = ECKey.generate_key("P-256") if alg == "ES256" else RSAKey.generate_key(rsa_bits)

    def proof(self, method: str, url: str, access_token: str | None = None, **overrides: Any) -> str:
        body: dict[str, Any] = {"htm": method, "htu": url, "iat": int(time.time()), "jti": uuid.uuid4().hex}
        if access_token is not None:
            body["ath"] = b64(hashlib.sha256(access_token.encode()).digest())
        body = {k: v for k, v in {**body, **overrides}.items() if v is not None}
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.key.as_dict(private=False)}
        return jwt.encode(header, body, self.key, algorithms=[self.alg])


def register(engine: Engine, partner: str, *keys: SigningKey) -> str:
    """Registers a client of `partner` with `keys`; its client id."""
    with Session(engine) as session, session.begin():
        return oauth_clients.register_client(session, partner, jwks(*keys), None, KeyMode.OPEN).client_id
