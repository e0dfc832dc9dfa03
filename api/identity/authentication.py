"""Bearer-key authentication: one answer for every kind of failure, so no key can be probed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.models import KeyMode, Partner, PartnerKey, PartnerStatus, PolicyRelease
from api.errors import ApiError, ErrorCode
from api.identity.access_tokens import looks_like_token
from api.identity.keys import hash_secret, secret_matches, split_token

# Recording every use would turn each read into a write; a minute is precise enough.
LAST_USED_PRECISION = timedelta(minutes=1)
_DUMMY_HASH = hash_secret("no key has this secret")
# With the latest policy release, read on every request as the grants version is (api.http.policy_in_force).
LATEST_POLICY = select(func.max(PolicyRelease.id)).scalar_subquery()
_KEY_AND_PARTNER = (
    select(PartnerKey, Partner, LATEST_POLICY)
    .join(Partner, Partner.id == PartnerKey.partner_id)
    .where(PartnerKey.prefix == bindparam("prefix"))
)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a partner, through one of its keys."""

    partner_id: int
    partner_public_id: str
    partner_name: str
    key_id: int
    key_prefix: str
    budget_capacity: int | None = None  # the partner's own budget, when it has one
    budget_refill_per_second: float | None = None
    grants_version: int = 0  # changes with any of the partner's grants (see api.identity.grant_cache)
    policy_version: int | None = None  # the latest policy release (see api.http.policy_in_force)
    key_mode: KeyMode = KeyMode.TRUSTED  # trusted: registered documents only (api/documents/)
    documents_version: int = 0  # changes with any of the partner's documents (see api.documents.registry)
    client_id: str | None = None  # with an OAuth access token: its client (`key_id` is the client's credential)
    token_jti: str | None = None


class CredentialRefused(ApiError):
    """A credential refused with its own answer (not the one for all): its HTTP status, its headers,
    and the principal when the credential was valid."""

    status = 401
    headers: dict[str, str] = {}  # noqa: RUF012  # replaced, never mutated
    principal: Principal | None = None


class TokensRequired(CredentialRefused):
    """A valid key of a partner that must use OAuth access tokens: said plainly, since only the
    holder of the secret learns it."""

    def __init__(self, principal: Principal) -> None:
        super().__init__(
            ErrorCode.UNAUTHENTICATED,
            "This partner accepts only OAuth access tokens (see the partner guide); its API keys are refused.",
        )
        self.principal = principal
        self.headers = {"WWW-Authenticate": 'DPoP algs="ES256 ES384 RS256 RS384"'}


class KeyQuarantined(CredentialRefused):
    """A live key of an active partner, quarantined after a distinct-patient refusal: said plainly,
    since only the holder of the secret learns it, and refused until an operator releases it."""

    def __init__(self, principal: Principal) -> None:
        super().__init__(
            ErrorCode.KEY_QUARANTINED,
            "This API key is quarantined after an unusual volume of patient data; contact the operator to release it.",
        )
        self.principal = principal
        self.status = 403


def bearer_token(authorization: str | None, schemes: tuple[str, ...] = ("bearer",)) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() in schemes and token.strip() else None


def presented_credential(authorization: str | None) -> str | None:
    """An API key or access token (`Bearer`), or a DPoP-bound access token (`DPoP`, RFC 9449). An API
    key under `DPoP` is none: no proof binds a key, and the scheme would only pass it off as a token."""
    credential = bearer_token(authorization, ("bearer", "dpop"))
    if credential is None or bearer_token(authorization) is not None or looks_like_token(credential):
        return credential
    return None


@dataclass(frozen=True)
class AuthenticatedKey:
    """A key's principal and what may end it without any change in the database (for the workers' cache,
    api/identity/principal_cache.py): its expiry, and its last use, recorded at minute precision."""

    principal: Principal
    expires_at: datetime | None
    last_used_at: datetime


async def authenticate(session: AsyncSession, token: str | None, now: datetime) -> Principal | None:
    """The principal for a valid, live key of an active partner; None for anything else. Raises
    KeyQuarantined for a quarantined one (after every other check: unknown, revoked, expired or
    suspended keys still get the one answer for all)."""
    authenticated = await authenticate_key(session, token, now)
    return authenticated.principal if authenticated else None


async def authenticate_key(session: AsyncSession, token: str | None, now: datetime) -> AuthenticatedKey | None:
    """`authenticate`, with the key's expiry and last use."""
    parts = split_token(token) if token else None
    if parts is None:
        return None
    prefix, secret = parts
    row = (await session.execute(_KEY_AND_PARTNER, {"prefix": prefix})).first()
    key, partner, policy_version = (row[0], row[1], row[2]) if row else (None, None, None)
    # Always compare a hash, so that an unknown prefix costs the same as a wrong secret.
    matches = secret_matches(secret, key.secret_hash if key else _DUMMY_HASH)
    if key is None or partner is None or not matches:
        return None
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return None
    if partner.status != PartnerStatus.ACTIVE:
        return None
    last_used_at = key.last_used_at
    if last_used_at is None or now - last_used_at > LAST_USED_PRECISION:
        await session.execute(update(PartnerKey).where(PartnerKey.id == key.id).values(last_used_at=now))
        await session.commit()
        last_used_at = now
    principal = Principal(
        partner.id, partner.public_id, partner.name, key.id, key.prefix,
        partner.budget_capacity, partner.budget_refill_per_second, partner.grants_version, policy_version,
        key.mode, partner.documents_version,
    )
    if partner.tokens_required or partner.dpop_required:  # requiring bound tokens refuses bearer keys too
        raise TokensRequired(principal)
    if key.quarantined_at is not None:
        raise KeyQuarantined(principal)
    return AuthenticatedKey(principal, key.expires_at, last_used_at)
