"""The server's access tokens: JWTs (RFC 9068 `at+jwt`) it signs with its own key
(api/identity/signing_keys.py), that live minutes.

Claims: `iss` and `aud` (the issuer), `sub` and `client_id` (the client), `scope` (space-separated,
no wider than the partner's grants when issued), `gv` (the partner's grants version when issued: any
change to its grants makes the token refused, as api/identity/grant_cache.py keys the cache),
`jti`, `iat`, `exp`, and `cnf.jkt` when bound to a DPoP key.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from joserfc import jwt
from joserfc.errors import JoseError

from api.identity.jose_rules import TOKEN_ALGORITHM, unverified_parts
from api.identity.signing_keys import SigningKeys

__all__ = ["TOKEN_TYPE", "AccessToken", "issue", "looks_like_token", "verify"]

TOKEN_TYPE = "at+jwt"
ISSUED_AHEAD_SECONDS = 60  # another worker's clock may run ahead of this one's


@dataclass(frozen=True)
class AccessToken:
    client_id: str
    scopes: frozenset[str]
    grants_version: int
    jti: str
    expires_at: float
    jkt: str | None  # the thumbprint of the DPoP key it is bound to
    kid: str = ""  # the server's key that signed it


def looks_like_token(credential: str) -> bool:
    """A JWT rather than an API key (`pak_…`): told apart by shape alone."""
    return credential.count(".") == 2


async def issue(
    keys: SigningKeys,
    issuer: str,
    client_id: str,
    scopes: Collection[str],
    grants_version: int,
    now: datetime,
    lifetime_seconds: int,
    jkt: str | None,
) -> tuple[str, AccessToken]:
    at = int(now.timestamp())
    token = AccessToken(
        client_id, frozenset(scopes), grants_version, secrets.token_urlsafe(16), at + lifetime_seconds, jkt
    )
    claims: dict[str, object] = {
        "iss": issuer, "aud": issuer, "sub": client_id, "client_id": client_id,
        "scope": " ".join(sorted(token.scopes)), "gv": grants_version,
        "jti": token.jti, "iat": at, "exp": token.expires_at,
    }
    if jkt is not None:
        claims["cnf"] = {"jkt": jkt}
    signer = await keys.signer(now)
    header = {"alg": TOKEN_ALGORITHM, "typ": TOKEN_TYPE, "kid": signer.kid}
    return jwt.encode(header, claims, signer, algorithms=[TOKEN_ALGORITHM]), token


async def verify(keys: SigningKeys, value: str, issuer: str, now: datetime, lifetime: int) -> AccessToken | None:
    """The token, if the server signed it for `issuer` with a live key, issued it (`iat`) for `lifetime`
    seconds at most, and it has not expired; else None. The lifetime is checked though only the server
    signs: a token signed otherwise (a key taken with its secret) is not served for years."""
    parts = unverified_parts(value)
    if parts is None or parts[0].get("typ") != TOKEN_TYPE or parts[0].get("alg") != TOKEN_ALGORITHM:
        return None
    found = await keys.verifier(parts[0].get("kid"), now)
    if found is None:
        return None
    key, signed_until = found
    try:
        claims = jwt.decode(value, key, algorithms=[TOKEN_ALGORITHM]).claims
    except (JoseError, ValueError, TypeError, KeyError):
        return None
    exp, iat, scope, gv, cnf = (claims.get(name) for name in ("exp", "iat", "scope", "gv", "cnf"))
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if (
        claims.get("iss") != issuer
        or claims.get("aud") != issuer
        or not isinstance(exp, int)
        or exp <= now.timestamp()
        or not isinstance(iat, int)
        or iat > now.timestamp() + ISSUED_AHEAD_SECONDS
        or exp - iat > lifetime
        or (signed_until is not None and iat > signed_until)  # its key's secret rotated before: not the server's
        or not isinstance(claims.get("client_id"), str)
        or not isinstance(scope, str)
        or not isinstance(gv, int)
        or not isinstance(claims.get("jti"), str)
        or (cnf is not None and not isinstance(jkt, str))
    ):
        return None
    return AccessToken(claims["client_id"], frozenset(scope.split()), gv, claims["jti"], exp, jkt, parts[0]["kid"])
