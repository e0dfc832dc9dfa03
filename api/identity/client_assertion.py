"""Client authentication by a signed JWT assertion (RFC 7523 `private_key_jwt`, as SMART Backend
Services profiles it): the client signs with its private key, the server verifies with the public
key it registered under the assertion's `kid`.

Every claim is checked: `iss` = `sub` = the client id, `aud` = the token endpoint (one string), `exp` in the
future and at most `MAX_LIFETIME` ahead, no `iat` or `nbf` in the future, a `jti` never seen before
(api/identity/replay.py), and an algorithm on the allow-list (api/identity/jose_rules.py). Every
failure is the one `invalid_client`; a client whose credential is quarantined is told so once its
assertion holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import import_key
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.database import WriterLock
from api.data.models import OAuthClient, OAuthClientKey, Partner, PartnerKey, PartnerStatus
from api.identity import replay
from api.identity.jose_rules import ASSERTION_ALGORITHMS, LEEWAY_SECONDS, unverified_parts
from api.identity.oauth_errors import invalid_client, quarantined_client
from api.storable_text import holds_unstorable_text

__all__ = ["ASSERTION_TYPE", "MAX_LIFETIME", "AuthenticatedClient", "authenticate_client"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_LIFETIME = timedelta(minutes=5)
MAX_JTI_LENGTH = 255


@dataclass(frozen=True)
class AuthenticatedClient:
    client_id: str
    partner_id: int
    grants_version: int
    dpop_required: bool  # its partner's: its tokens must be bound to a DPoP key


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _claims_hold(claims: dict[str, object], client_id: str, audience: str, now: datetime) -> bool:
    """The claims of RFC 7523 §3, bounded as SMART Backend Services bounds them."""
    at, leeway = now.timestamp(), LEEWAY_SECONDS
    exp, iat, nbf, jti, aud = (claims.get(c) for c in ("exp", "iat", "nbf", "jti", "aud"))
    return (
        claims.get("iss") == client_id
        and claims.get("sub") == client_id
        # one string, never a list: a list also naming another server is the audience injection RFC 7523bis closes
        and aud == audience
        and _is_time(exp)
        and at - leeway < exp <= at + MAX_LIFETIME.total_seconds() + leeway  # type: ignore[operator]
        and (iat is None or (_is_time(iat) and iat <= at + leeway))  # type: ignore[operator]
        and (nbf is None or (_is_time(nbf) and nbf <= at + leeway))  # type: ignore[operator]
        and isinstance(jti, str)
        and 0 < len(jti) <= MAX_JTI_LENGTH
    )


def _names_a_key(client_id: str, kid: str) -> bool:
    """The unverified `iss` and `kid` can name a stored key at all: text within their columns that the
    database can hold (a lone surrogate failed the lookup, answered 503 for the client's own mistake)."""
    return (
        0 < len(client_id) <= _CLIENT_ID_LENGTH
        and 0 < len(kid) <= _KID_LENGTH
        and not holds_unstorable_text([client_id, kid])
    )


def _length(column: Any) -> int:
    length = column.type.length  # a String column's
    assert isinstance(length, int)
    return length


_CLIENT_ID_LENGTH, _KID_LENGTH = _length(OAuthClient.client_id), _length(OAuthClientKey.kid)


async def authenticate_client(
    session: AsyncSession, assertion: str, audience: str, now: datetime, writer_lock: WriterLock | None = None
) -> AuthenticatedClient:
    """The client that signed `assertion` for `audience` (the token endpoint's URL); OAuthError
    `invalid_client` for anything else. Records the assertion's `jti` (commits)."""
    parts = unverified_parts(assertion)
    if parts is None:
        raise invalid_client()
    header, unverified = parts
    client_id, kid, alg = unverified.get("iss"), header.get("kid"), header.get("alg")
    if not isinstance(client_id, str) or not isinstance(kid, str) or alg not in ASSERTION_ALGORITHMS:
        raise invalid_client()
    if not _names_a_key(client_id, kid):
        raise invalid_client()
    statement = (
        select(
            OAuthClientKey.jwk,
            PartnerKey.revoked_at,
            PartnerKey.quarantined_at,
            Partner.status,
            Partner.id,
            Partner.grants_version,
            Partner.dpop_required,
        )
        .join(OAuthClient, OAuthClient.id == OAuthClientKey.client_id)
        .join(PartnerKey, PartnerKey.id == OAuthClient.key_id)
        .join(Partner, Partner.id == OAuthClient.partner_id)
        .where(OAuthClient.client_id == client_id, OAuthClientKey.kid == kid, OAuthClientKey.retired_at.is_(None))
    )
    row = (await session.execute(statement)).first()
    if row is None or row.revoked_at is not None or row.status != PartnerStatus.ACTIVE:
        raise invalid_client()
    try:
        token = jwt.decode(assertion, import_key(json.loads(row.jwk)), algorithms=ASSERTION_ALGORITHMS)
    except (JoseError, ValueError, TypeError, KeyError):
        raise invalid_client() from None
    claims = token.claims
    if not _claims_hold(claims, client_id, audience, now):
        raise invalid_client()
    # Kept until the assertion's own expiry (and the leeway) has passed: then `exp` refuses it.
    kept_until = datetime.fromtimestamp(claims["exp"] + LEEWAY_SECONDS, now.tzinfo)
    if not await replay.first_use(session, "assertion", client_id, claims["jti"], kept_until, now, writer_lock):
        raise invalid_client()
    if row.quarantined_at is not None:  # told to the key's holder only: the assertion is signed by now
        raise quarantined_client()
    return AuthenticatedClient(client_id, row.id, row.grants_version, row.dpop_required)
