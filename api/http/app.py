"""The composition root: builds the ASGI application from settings.

The engine, the per-worker caches and gates, the GraphQL view and the request pipeline
(api/http/pipeline.py, where the order of a request is written) are made here, once per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.clock import Clock, system_clock
from api.compiled.ad_hoc import AdHocPlans
from api.data.database import make_async_engine, make_session_factory, pool_capacity, sqlite_writer_lock
from api.documents.registry import DocumentRegistry
from api.errors import ApiError, ErrorCode, error_body
from api.http import metrics
from api.http.graphiql import graphiql_routes
from api.http.graphql_view import PartnerGraphQL
from api.http.oauth_endpoints import OAuthEndpoints
from api.http.pipeline import GraphQLPipeline
from api.http.policy_in_force import LivePolicy, PolicyInForce, starting_policy
from api.http.tracing import OperationTracing, tracer_provider, tracing_middleware
from api.identity.grant_cache import GrantCache
from api.identity.key_seal import KeySeal
from api.identity.principal_cache import principal_cache
from api.identity.signing_keys import SigningKeys
from api.identity.token_authentication import TokenAuthenticator
from api.ledger.webhook import WebhookSender
from api.protection.address_limiter import AddressLimiter
from api.protection.budgets import Budgets
from api.protection.extraction import ExtractionGuard
from api.protection.key_gates import CredentialGates, partner_limit
from api.schema import PartnerSchema, build_schema
from api.services.cursors import CursorCodec
from api.settings import Settings, get_settings
from authz.engine import Authorizer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger("api")


async def http_error(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (unknown path, method not allowed) in the API's JSON error shape."""
    assert isinstance(error, StarletteHTTPException)
    code = ErrorCode.NOT_FOUND if error.status_code == 404 else ErrorCode.BAD_USER_INPUT
    return JSONResponse(error_body(ApiError(code, error.detail)), status_code=error.status_code, headers=error.headers)


def create_app(
    settings: Settings | None = None,
    authorizer: Authorizer | None = None,
    schema: PartnerSchema | None = None,
    clock: Clock = system_clock,
    tracing: TracerProvider | None = None,
) -> Starlette:
    """The app; `tracing` (tests) replaces the provider PARTNER_API_TRACING_OTLP_ENDPOINT would configure."""
    settings = settings or get_settings()
    engine = make_async_engine(settings.database_url, settings.statement_timeout_seconds)
    # An authorizer given in code (tests, benchmarks) is the policy, whatever the database releases.
    policy = (
        LivePolicy(PolicyInForce.of(authorizer), follows_releases=False) if authorizer else starting_policy(settings)
    )
    provider = tracing or tracer_provider(settings.tracing_otlp_endpoint)
    if not settings.secret_key:
        logger.warning("PARTNER_API_SECRET_KEY is unset: cursors will not survive a restart or cross workers")
    sessions, writer_lock = make_session_factory(engine), sqlite_writer_lock(engine, settings.statement_timeout_seconds)
    alert_sender = WebhookSender(
        settings, sessions, writer_lock, clock=clock
    )  # alerts and quarantines to the operators
    schema = schema or build_schema(settings)
    # Each partner's registered documents, parsed and validated once per worker (api/documents/).
    documents = DocumentRegistry(schema._schema, settings, schema.rules)
    # Seals cursors and the access tokens' signing keys; random per process when unset.
    secret, previous = settings.secret_key.encode() or secrets.token_bytes(32), [settings.secret_key_previous.encode()]
    # the access tokens' keys, in the database, sealed with the secret (api/identity/signing_keys.py)
    signing_keys = SigningKeys(sessions, KeySeal(secret, previous))
    # Requests without a valid credential, per client address: /graphql's and the token endpoint's.
    addresses = AddressLimiter(
        settings.failed_requests_per_address,
        settings.failed_requests_window_seconds,
        settings.failed_requests_tracked_addresses,
        settings.trusted_proxies,
    )
    graphql = GraphQLPipeline(
        settings=settings,
        sessions=sessions,
        writer_lock=writer_lock,
        view=PartnerGraphQL(
            schema,
            documents,
            statement_timeout=settings.statement_timeout_seconds,
            compiled=settings.compiled_plans,
            ad_hoc=AdHocPlans(schema._schema, schema.max_tokens, schema.rules),
        ),
        authorizer=policy.current.authorizer,
        policy=policy,
        gates=CredentialGates(
            partner_limit(
                settings.max_concurrent_requests_per_partner, settings.partner_pool_share, pool_capacity(engine)
            )
        ),
        grants=GrantCache(),
        budgets=Budgets(settings),
        extraction=ExtractionGuard(settings, on_alert=alert_sender.wake),
        cursors=CursorCodec(secret, previous),
        tokens=TokenAuthenticator(signing_keys, writer_lock, settings.oauth_issuer, settings.access_token_seconds),
        addresses=addresses,
        clock=clock,
        tracing=OperationTracing(provider),
        principals=principal_cache(settings),  # its PostgreSQL listener runs in the lifespan
    )
    # the token endpoint, metadata, JWKS
    oauth = OAuthEndpoints(settings, sessions, writer_lock, signing_keys, clock, addresses)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # any failure means "not ready"; the reason goes to the log, not the client
            logger.exception("readiness check failed")
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # What exists now (schema, policy, mappers) lives as long as the worker: frozen, the
        # collector's full passes skip it instead of pausing the requests they hit.
        gc.freeze()
        # Every worker sends the alert outbox: rows are claimed one sender at a time.
        sender = asyncio.create_task(alert_sender.run()) if alert_sender.configured else None
        await graphql.principals.start()  # until its notifications are heard, keys are looked up every time
        yield
        await graphql.principals.stop()
        await graphql.ledger.drain()  # the records still queued are committed before the engine closes
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        await engine.dispose()
        if provider is not None and tracing is None:
            provider.shutdown()  # the spans still batched are sent before the worker exits

    # CORS is closed unless origins are configured: no Access-Control-* header at all by default.
    cors = (
        [
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=["X-Request-Id", "Retry-After"],
                max_age=600,
            )
        ]
        if settings.cors_origins
        else []
    )
    traced = tracing_middleware(engine, provider) if provider is not None else []
    app = Starlette(
        middleware=[*traced, *cors],
        exception_handlers={StarletteHTTPException: http_error},
        routes=[
            Route("/graphql", graphql.handle, methods=["GET", "POST"]),
            *oauth.routes(),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics.endpoint),
            *(graphiql_routes() if settings.graphiql else []),
        ],
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.sessions = graphql.sessions
    app.state.gates = graphql.gates
    app.state.principals = graphql.principals
    app.state.turns = graphql.turns
    app.state.ledger = graphql.ledger
    app.state.settings = settings
    app.state.policy = policy
    app.state.alert_sender = alert_sender
    app.state.clock = clock
    return app

