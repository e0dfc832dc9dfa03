"""Builds the ASGI application from settings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from cross_web import HTTPException

from api.ledger import access as ledger

from api.http import logs

from api.http import metrics
from api.identity.authentication import KeyQuarantined, authenticate, bearer_token
from api.identity.keys import split_token
from api.ledger.access import AccessEntry
from api.ledger.webhook import WebhookSender
from api.services.context import RequestContext
from api.services.cursors import CursorCodec
from api.data.database import make_async_engine, make_session_factory, write_turns
from api.errors import ApiError, ErrorCode, timed_out
from api.http.graphiql import graphiql_routes, render_graphiql, wants_graphiql
from api.http.graphql_view import DATABASE_UNAVAILABLE, PartnerGraphQL, is_database_unavailable, is_statement_timeout
from api.protection.budgets import Budgets
from api.protection.extraction import ExtractionGuard
from api.protection.key_gates import CredentialGates
from api.identity.grant_cache import GrantCache
from api.schema import PartnerSchema, build_schema
from api.schema.loaders import Loaders
from api.settings import Settings, get_settings
from api.timeutil import utcnow
from authz.engine import Authorizer

logger = logging.getLogger("api")


def _operation(request: Request) -> dict[str, Any] | None:
    """The request's JSON body or query string, for the ledger; None when it is not an object."""
    if request.method == "GET":
        return dict(request.query_params)
    try:
        body = json.loads(getattr(request, "_body", b"") or b"null")
    except (ValueError, RecursionError):  # the view has refused it already
        return None
    return body if isinstance(body, dict) and all(isinstance(body.get(k), (str, type(None))) for k in ("query", "operationName")) else None


def _presented_prefix(request: Request) -> str | None:
    token = bearer_token(request.headers.get("authorization"))
    parts = split_token(token) if token else None
    return parts[0] if parts else None


def _code_of(response: Response) -> str | None:
    if response.status_code == 200:
        return None
    try:
        return json.loads(bytes(response.body))["errors"][0]["extensions"]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def error_response(status: int, code: ErrorCode, message: str, request_id: str, **headers: str) -> Response:
    return refusal_response(status, ApiError(code, message), request_id, **headers)


def refusal_response(status: int, refusal: ApiError, request_id: str, **headers: str) -> Response:
    body = {"errors": [{"message": str(refusal), "extensions": {**refusal.extensions, "requestId": request_id}}]}
    return JSONResponse(body, status_code=status, headers={"X-Request-Id": request_id, **headers})


def _unavailable(error: Exception, settings: Settings) -> ApiError:
    if is_statement_timeout(error):
        return timed_out("statement", settings.statement_timeout_seconds)
    reason = {"reason": DATABASE_UNAVAILABLE} if is_database_unavailable(error) else {}
    return ApiError(ErrorCode.INTERNAL_SERVER_ERROR, "The service is temporarily unavailable; retry later.", **reason)


async def http_error(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (unknown path, method not allowed) in the API's JSON error shape."""
    assert isinstance(error, StarletteHTTPException)
    code = ErrorCode.NOT_FOUND if error.status_code == 404 else ErrorCode.BAD_USER_INPUT
    body = {"errors": [{"message": error.detail, "extensions": {"code": code.value}}]}
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


async def _body_too_large(request: Request, limit: int) -> bool:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return True
    # Read it (starlette keeps it for the view), bounded even without a Content-Length.
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return True
        chunks.append(chunk)
    request._body = b"".join(chunks)
    return False


def create_app(
    settings: Settings | None = None, authorizer: Authorizer | None = None, schema: PartnerSchema | None = None
) -> Starlette:
    settings = settings or get_settings()
    engine = make_async_engine(settings.database_url, settings.statement_timeout_seconds)
    sessions, write_turn = make_session_factory(engine), write_turns(engine)
    authorizer = authorizer or Authorizer()
    if not settings.secret_key:
        logger.warning("PARTNER_API_SECRET_KEY is unset: cursors will not survive a restart or cross workers")
    cursors = CursorCodec(settings.secret_key.encode() or secrets.token_bytes(32))
    view = PartnerGraphQL(schema or build_schema(settings), graphql_ide=None)
    view.statement_timeout = settings.statement_timeout_seconds
    alert_sender = WebhookSender(settings, sessions, write_turn)
    budgets, extraction, grants = Budgets(settings), ExtractionGuard(settings, on_alert=alert_sender.wake), GrantCache()
    gates = CredentialGates(settings.max_concurrent_requests_per_key)

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

    async def graphql_endpoint(request: Request) -> Response:
        request_id = uuid.uuid4().hex
        request.state.request_id = request_id
        logs.request_id.set(request_id)  # on every log line of this request
        if wants_graphiql(request):
            if not settings.graphiql:
                return error_response(404, ErrorCode.NOT_FOUND, "GraphiQL is disabled on this server.", request_id)
            return render_graphiql(request)
        started, now = time.perf_counter(), utcnow()
        try:
            response, context = await serve(request, request_id, now)
        except Exception as error:  # the database is away, saturated or slow: a clear refusal, never a bare 500
            logger.exception("request %s failed outside GraphQL execution", request_id)
            response, context = refusal_response(503, _unavailable(error, settings), request_id), None
        served = response.status_code == 200 and getattr(request.state, "served", False)
        principal = context.principal if context else getattr(request.state, "principal", None)
        operation = _operation(request) or {}
        entry = AccessEntry(
            request_id=request_id, at=now,
            partner_id=principal.partner_id if principal else None,
            key_id=principal.key_id if principal else None,
            key_prefix=_presented_prefix(request),
            operation_name=(context.operation_name if context else None) or operation.get("operationName"),
            query=operation.get("query"),
            outcome="served" if served else "refused",
            error_code=getattr(request.state, "error_code", None) or _code_of(response),
            http_status=response.status_code,
            requested_cost=(context.cost or {}).get("requestedQueryCost") if context else None,
            actual_cost=(context.cost or {}).get("actualQueryCost") if context else None,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            client_address=request.client.host if request.client else None,
        )
        try:
            async with sessions() as session, write_turn(session):
                await ledger.write(session, entry, context.disclosures if served and context else None)
                if context is not None and context.refund:  # last: the budget row stays locked until the commit
                    await budgets.refund(session, context.principal, context.refund, time.time())
                await session.commit()
        except Exception:  # fail closed: what cannot be recorded is not sent
            logger.exception("could not write the access ledger for request %s", request_id)
            response = error_response(
                503, ErrorCode.INTERNAL_SERVER_ERROR,
                "The access could not be recorded, so no data is sent; retry later.", request_id,
            )
            entry = replace(entry, outcome="refused", error_code=ErrorCode.INTERNAL_SERVER_ERROR.value, http_status=503)
        # Metrics and the log line count the ledger write in the duration: it is part of the latency.
        entry = replace(entry, duration_ms=round((time.perf_counter() - started) * 1000, 3))
        partner = principal.partner_name if principal else None
        metrics.observe(entry, partner)
        logs.log_request(entry, partner)
        return response

    async def serve(request: Request, request_id: str, now: datetime) -> tuple[Response, RequestContext | None]:
        if await _body_too_large(request, settings.max_body_bytes):
            return error_response(
                413, ErrorCode.BAD_USER_INPUT, f"Request bodies are limited to {settings.max_body_bytes} bytes.", request_id
            ), None
        credential = bearer_token(request.headers.get("authorization"))  # "bearer  K" and "Bearer K" share a gate
        async with gates.turn(credential) as refusal:
            if refusal is not None:
                request.state.principal = refusal.principal
                limited = ApiError(ErrorCode.RATE_LIMITED, refusal.message, retryAfter=refusal.retry_after)  # as a budget refusal says it
                return refusal_response(429, limited, request_id, **{"Retry-After": str(refusal.retry_after)}), None
            response, context = await serve_in_turn(request, credential, request_id, utcnow())  # its time starts once admitted
        if context is not None and context.retry_after is not None:
            gates.cool(credential, context.principal, context.retry_after)
        return response, context

    async def serve_in_turn(request: Request, credential: str | None, request_id: str, now: datetime) -> tuple[Response, RequestContext | None]:
        async with sessions() as session:
            try:
                principal = await authenticate(session, credential, now)
            except KeyQuarantined as quarantined:
                request.state.principal = quarantined.principal
                return refusal_response(403, quarantined, request_id), None
            if principal is None:
                return error_response(
                    401, ErrorCode.UNAUTHENTICATED, "A valid API key is required: `Authorization: Bearer <key>`.",
                    request_id, **{"WWW-Authenticate": 'Bearer realm="partner-api"'},
                ), None
            context = RequestContext(
                request=request, principal=principal, request_time=now, authorizer=authorizer,
                session=session, cursors=cursors, request_id=request_id, settings=settings,
                budgets=budgets, extraction=extraction, grants=grants, write_turn=write_turn,
            )
            context.loaders = Loaders(context)
            try:
                async with asyncio.timeout(settings.request_timeout_seconds) as deadline:
                    response = await view.run(request, context=context)
            except HTTPException as error:
                return error_response(error.status_code, ErrorCode.BAD_USER_INPUT, error.reason, request_id), context
            except TimeoutError:
                if not deadline.expired():
                    raise
                return refusal_response(503, timed_out("request", settings.request_timeout_seconds), request_id), context
        response.headers["X-Request-Id"] = request_id
        response.status_code = getattr(request.state, "http_status", response.status_code)
        if context.retry_after is not None:
            response.headers["Retry-After"] = str(context.retry_after)
        return response, context

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # What exists now (schema, policy, mappers: ~100k objects) lives as long as the worker: frozen,
        # the collector's full passes skip it, instead of pausing every request they hit for ~50 ms.
        gc.freeze()
        # Every worker sends the alert outbox: rows are claimed one sender at a time.
        sender = asyncio.create_task(alert_sender.run()) if alert_sender.configured else None
        yield
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        await engine.dispose()

    # CORS is closed unless origins are configured: no Access-Control-* header at all by default.
    cors = [
        Middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"], expose_headers=["X-Request-Id", "Retry-After"], max_age=600,
        )
    ] if settings.cors_origins else []
    app = Starlette(
        middleware=cors,
        exception_handlers={StarletteHTTPException: http_error},
        routes=[
            Route("/graphql", graphql_endpoint, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics.endpoint),
            *(graphiql_routes() if settings.graphiql else []),
        ],
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.settings = settings
    app.state.authorizer = authorizer
    app.state.alert_sender = alert_sender
    return app
