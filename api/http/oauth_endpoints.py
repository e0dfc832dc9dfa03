"""The OAuth 2.0 authorization server's routes: the token endpoint (client credentials with a
signed client assertion, RFC 6749 §4.4 and RFC 7523), its metadata (RFC 8414) and its JWKS.

A token request is authenticated by api/identity/client_assertion.py, optionally bound to the
client's DPoP key (api/identity/dpop.py), and answered with a token no wider than the partner's
live grants (api/identity/access_tokens.py). Refusals are RFC 6749 §5.2's, worded once in
api/identity/oauth_errors.py; every answer carries `Cache-Control: no-store`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import parse_qsl

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.clock import Clock
from api.data.database import WriterLock
from api.data.models import Grant
from api.errors import CLIENT_CLOSED_REQUEST
from api.http.bounded_body import BodyTooLarge, read_bounded
from api.identity import access_tokens, dpop
from api.identity.client_assertion import ASSERTION_TYPE, authenticate_client
from api.identity.jose_rules import ASSERTION_ALGORITHMS, PROOF_ALGORITHMS
from api.identity.oauth_errors import (
    OAuthError,
    invalid_client,
    invalid_request,
    invalid_scope,
    unsupported_grant_type,
)
from api.identity.signing_keys import SigningKeys
from api.identity.token_authentication import issuer_of
from api.protection.address_limiter import AddressLimiter
from api.scopes import Scope
from api.settings import Settings

__all__ = ["OAuthEndpoints"]

logger = logging.getLogger("api")

TOKEN_PATH, METADATA_PATH, JWKS_PATH = "/oauth/token", "/.well-known/oauth-authorization-server", "/oauth/jwks"
MAX_FORM_BYTES = 16384
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PARAMETERS = ("grant_type", "client_assertion_type", "client_assertion", "client_id", "scope")


def _form(body: bytes) -> dict[str, str]:
    """The request's parameters; each at most once (RFC 6749 §3.2)."""
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise invalid_request("The body is not application/x-www-form-urlencoded.") from None
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise invalid_request()
    return dict(pairs)


async def _granted(session: AsyncSession, partner_id: int, now: datetime) -> set[str]:
    """The scopes of the partner's live grants, at any practice."""
    live = await session.execute(
        select(Grant).where(Grant.partner_id == partner_id, Grant.revoked_at.is_(None), Grant.expires_at > now)
    )
    return {scope.value for grant in live.scalars() for scope in Scope if getattr(grant, scope.column)}


class OAuthEndpoints:
    """The routes, with what they share: settings, sessions, the signing keys and the clock."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        writer_lock: WriterLock,
        keys: SigningKeys,
        clock: Clock,
        addresses: AddressLimiter,
    ) -> None:
        self.settings, self.sessions, self.writer_lock = settings, sessions, writer_lock
        self.keys, self.clock, self.addresses = keys, clock, addresses

    def routes(self) -> list[Route]:
        return [
            Route(TOKEN_PATH, self.token, methods=["POST"]),
            Route(METADATA_PATH, self.metadata, methods=["GET"]),
            Route(JWKS_PATH, self.jwks, methods=["GET"]),
        ]

    async def token(self, request: Request) -> Response:
        # An address past its failed requests is refused before any database work, as on /graphql; each
        # request counts when it arrives (a burst too) and is given back when it gets a token.
        client = self.addresses.client(request)
        wait = self.addresses.refusal(client)
        if wait is not None:
            body = {"error": "temporarily_unavailable", "error_description": "Too many failed requests; retry later."}
            return JSONResponse(body, status_code=429, headers={**NO_STORE, "Retry-After": str(wait)})
        self.addresses.failed(client)
        try:
            answer = await self._token(request)
            self.addresses.forgive(client)
            return answer
        except OAuthError as error:
            headers = {**NO_STORE, **({"WWW-Authenticate": "Bearer"} if error.status == 401 else {})}
            if error.status == 408:
                headers["Connection"] = "close"
            return JSONResponse(error.body(), status_code=error.status, headers=headers)
        except ClientDisconnect:  # nobody to answer: the client's doing, not a server failure
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except Exception:  # the database is away or slow: a clear refusal, never a bare 500
            logger.exception("token request failed")
            body = {"error": "temporarily_unavailable", "error_description": "Retry later."}
            return JSONResponse(body, status_code=503, headers={**NO_STORE, "Retry-After": "5"})

    async def _token(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        declared = request.headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > MAX_FORM_BYTES
        if content_type != "application/x-www-form-urlencoded" or too_large:
            raise invalid_request("The body must be application/x-www-form-urlencoded, at most 16 KiB.")
        form = _form(await self._body(request))
        if not all(form.get(name) for name in ("grant_type", "client_assertion_type", "client_assertion")):
            raise invalid_request()
        if form["grant_type"] != "client_credentials":
            raise unsupported_grant_type()
        if form["client_assertion_type"] != ASSERTION_TYPE:
            raise invalid_client()
        now, issuer = self.clock(), issuer_of(self.settings.oauth_issuer, request)
        async with self.sessions() as session:
            client = await authenticate_client(
                session, form["client_assertion"], issuer + TOKEN_PATH, now, self.writer_lock
            )
            if form.get("client_id", client.client_id) != client.client_id:
                raise invalid_client()
            jkt = None
            proofs = request.headers.getlist("dpop")
            if not proofs and client.dpop_required:
                raise OAuthError("invalid_dpop_proof", "This client's tokens must be bound to a DPoP key: prove one.")
            if proofs:
                try:
                    proof = proofs[0] if len(proofs) == 1 else None
                    jkt = await dpop.verify_proof(
                        session, proof, "POST", issuer + TOKEN_PATH, now, writer_lock=self.writer_lock
                    )
                except dpop.InvalidProof:
                    raise OAuthError("invalid_dpop_proof", "The DPoP proof is invalid.") from None
            granted = await _granted(session, client.partner_id, now)
        # Exactly the partner's grants: a narrower token would need the policy to read the token's
        # scopes as well as the grants, which it does not yet; so none is issued rather than one
        # that claims less than it allows.
        requested = set(form["scope"].split()) if "scope" in form else granted
        if not requested or requested != granted:
            raise invalid_scope()
        value, token = await access_tokens.issue(
            self.keys, issuer, client.client_id, requested, client.grants_version, now,
            self.settings.access_token_seconds, jkt,
        )
        answer = {
            "access_token": value,
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": self.settings.access_token_seconds,
            "scope": " ".join(sorted(token.scopes)),
        }
        return JSONResponse(answer, headers=NO_STORE)

    async def _body(self, request: Request) -> bytes:
        """The form's bytes, as /graphql reads a body: bounded in size and in time (a slow client holds a
        connection, never a worker's time: 408 and the connection closed)."""
        seconds = self.settings.body_timeout_seconds
        try:
            return await read_bounded(request, MAX_FORM_BYTES, seconds)
        except BodyTooLarge:
            raise invalid_request("The body must be application/x-www-form-urlencoded, at most 16 KiB.") from None
        except TimeoutError:
            slow = f"The request body was not received within {seconds:g} s."
            raise OAuthError("invalid_request", slow, 408) from None

    async def metadata(self, request: Request) -> Response:
        """RFC 8414 authorization server metadata."""
        issuer = issuer_of(self.settings.oauth_issuer, request)
        return JSONResponse(
            {
                "issuer": issuer,
                "token_endpoint": issuer + TOKEN_PATH,
                "jwks_uri": issuer + JWKS_PATH,
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
                "dpop_signing_alg_values_supported": list(PROOF_ALGORITHMS),
                "scopes_supported": [scope.value for scope in Scope],
                "response_types_supported": [],
            }
        )

    async def jwks(self, _: Request) -> Response:
        return JSONResponse(await self.keys.jwks(self.clock()), headers={"Cache-Control": "max-age=60"})
