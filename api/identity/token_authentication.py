"""Access-token authentication of a request to /graphql.

The token must be one the server signed, unexpired (api/identity/access_tokens.py); a DPoP-bound
token must come with the `DPoP` scheme and a valid proof of this request by its key
(api/identity/dpop.py), and an unbound one with `Bearer`. Its client is then read as a key is, on
every request: a revoked client (its credential row), a suspended partner, or any change to the
partner's grants since the token was issued (the grants version, which a trigger bumps, as for the
grant cache) refuses it at once, in every worker, though the token has not expired.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from api.data.database import WriterLock
from api.data.models import OAuthClient, OAuthSigningKey, Partner, PartnerKey, PartnerStatus
from api.errors import ErrorCode
from api.identity import access_tokens, dpop
from api.identity.authentication import (
    LAST_USED_PRECISION,
    LATEST_POLICY,
    CredentialRefused,
    KeyQuarantined,
    Principal,
)
from api.identity.jose_rules import PROOF_ALGORITHMS
from api.identity.signing_keys import SigningKeys

__all__ = ["TokenAuthenticator", "TokenRefused", "resource_url"]

# With the token's client, whether its signing key is still live: a retired key's tokens are refused
# on their next request in every worker, in the same statement (the workers' keys are re-read every 30 s).
_SIGNED_BY_LIVE_KEY = (
    exists().where(OAuthSigningKey.kid == bindparam("kid"), OAuthSigningKey.retired_at.is_(None)).label("live")
)
_CLIENT = (
    select(OAuthClient.client_id, PartnerKey, Partner, LATEST_POLICY, _SIGNED_BY_LIVE_KEY)
    .join(PartnerKey, PartnerKey.id == OAuthClient.key_id)
    .join(Partner, Partner.id == OAuthClient.partner_id)
    .where(OAuthClient.client_id == bindparam("client_id"))
)


class TokenRefused(CredentialRefused):
    """One answer for every refused token (RFC 6750 §3.1 `invalid_token`), naming the scheme that
    would have been accepted."""

    def __init__(self, dpop_bound: bool) -> None:
        super().__init__(
            ErrorCode.UNAUTHENTICATED,
            "A valid, unexpired access token is required, with a DPoP proof of this request if it is bound to a key.",
        )
        scheme = f'DPoP algs="{" ".join(PROOF_ALGORITHMS)}", ' if dpop_bound else "Bearer "
        self.headers = {"WWW-Authenticate": f'{scheme}error="invalid_token"'}


_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def issuer_of(configured: str, request: Request) -> str:
    """The issuer: the configured public URL; else the URL the request named, if it names this server
    (a loopback name or the address the connection reached, and its port); else that address. Never
    a name of another server: with `Host: evil.example`, an assertion made for that server (`aud` its
    token endpoint) was accepted, and the token named it."""
    if configured:
        return configured.rstrip("/")
    scheme = request.scope.get("scheme", "http")
    server, default = request.scope.get("server"), _DEFAULT_PORTS.get(scheme)
    if not server or str(server[0]).startswith("/"):  # a unix socket's path: no address names it
        return f"{scheme}://localhost"
    host, port = server[0], server[1] or default
    named = request.url
    if named.hostname in _LOOPBACK | {host} and (named.port or default) == port:
        return str(request.base_url).rstrip("/")
    netloc = f"[{host}]" if ":" in host else host  # an IPv6 address
    return f"{scheme}://{netloc}" + ("" if port == default else f":{port}")


def resource_url(configured: str, request: Request) -> str:
    """The URL a DPoP proof names (`htu`): the issuer's, with this request's path, without its query."""
    return issuer_of(configured, request) + request.url.path


class TokenAuthenticator:
    """Authenticates requests that carry an access token; one per worker."""

    def __init__(self, keys: SigningKeys, writer_lock: WriterLock, issuer: str, lifetime: int) -> None:
        self.keys, self.writer_lock, self.issuer, self.lifetime = keys, writer_lock, issuer, lifetime

    async def authenticate(self, session: AsyncSession, request: Request, credential: str, now: datetime) -> Principal:
        """The principal of a valid token and proof; raises TokenRefused (or KeyQuarantined)."""
        scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
        issuer = issuer_of(self.issuer, request)
        token = await access_tokens.verify(self.keys, credential, issuer, now, self.lifetime)
        bound = token is not None and token.jkt is not None
        if token is None or (scheme == "dpop") != bound:  # RFC 9449 §7.1: a bound token only as DPoP
            raise TokenRefused(scheme == "dpop" or bound)
        row = (await session.execute(_CLIENT, {"client_id": token.client_id, "kid": token.kid})).first()
        key, partner, policy_version, live = (row[1], row[2], row[3], row[4]) if row else (None, None, None, False)
        if (
            key is None
            or partner is None
            or not live  # signed by a key since retired
            or key.revoked_at is not None
            or partner.status != PartnerStatus.ACTIVE
            or partner.grants_version != token.grants_version
            or (partner.dpop_required and not bound)  # a bearer token issued before DPoP was required
        ):
            raise TokenRefused(bound or (partner is not None and partner.dpop_required))
        if token.jkt is not None:
            proofs = request.headers.getlist("dpop")
            try:
                jkt = await dpop.verify_proof(
                    session,
                    proofs[0] if len(proofs) == 1 else None,
                    request.method,
                    resource_url(self.issuer, request),
                    now,
                    access_token=credential,
                    writer_lock=self.writer_lock,
                )
            except dpop.InvalidProof:
                raise TokenRefused(True) from None
            if jkt != token.jkt:  # a valid proof, by another key than the token's
                raise TokenRefused(True)
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_PRECISION:  # as for a key: `key list`
            async with self.writer_lock(session):
                await session.execute(update(PartnerKey).where(PartnerKey.id == key.id).values(last_used_at=now))
                await session.commit()
        principal = Principal(
            partner.id, partner.public_id, partner.name, key.id, key.prefix,
            partner.budget_capacity, partner.budget_refill_per_second, partner.grants_version, policy_version,
            key.mode, partner.documents_version, client_id=token.client_id, token_jti=token.jti,
        )
        if key.quarantined_at is not None:
            raise KeyQuarantined(principal)
        return principal
