"""The path of one request to `/graphql`, step by step, in one class."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message

from api.clock import Clock, system_clock
from api.data.database import WriterLock
from api.data.failures import database_refusal, is_database_unavailable
from api.errors import (
    CLIENT_CLOSED_REQUEST,
    CLIENT_DISCONNECTED,
    DATABASE_UNAVAILABLE,
    LEDGER_UNAVAILABLE,
    ApiError,
    ErrorCode,
    timed_out,
    unavailable,
)
from api.http import logs, metrics
from api.http.bounded_body import BodyTooLarge, read_bounded
from api.http.graphiql import render_graphiql, wants_graphiql
from api.http.graphql_view import PartnerGraphQL
from api.http.media_types import GRAPHQL_RESPONSE, JSON, MAX_MEDIA_RANGES, negotiate
from api.http.outcome import Outcome, refused
from api.http.policy_in_force import LivePolicy, PolicyInForce
from api.http.tracing import OperationTracing
from api.identity.access_tokens import looks_like_token
from api.identity.authentication import CredentialRefused, Principal, bearer_token, presented_credential
from api.identity.grant_cache import GrantCache
from api.identity.keys import split_token
from api.identity.principal_cache import PrincipalCache, Uncached
from api.identity.request_identity import RequestIdentity
from api.identity.token_authentication import TokenAuthenticator
from api.ledger.access import AccessEntry
from api.ledger.disclosure_recorder import DisclosureRecorder
from api.ledger.group_commit import GroupCommit, LedgerWork
from api.protection.address_limiter import AddressLimiter
from api.protection.budgets import Budgets
from api.protection.extraction import ExtractionGuard
from api.protection.fair_turns import FairTurns
from api.protection.key_gates import CredentialGates
from api.protection.pre_pricing import price_of
from api.schema.context import GraphQLContext
from api.services.cursors import CursorCodec
from api.services.readable_fields import ReadableFields
from api.services.unit_of_work import UnitOfWork
from api.settings import Settings
from authz.engine import Authorizer

__all__ = ["GraphQLPipeline"]

logger = logging.getLogger("api")


class GraphQLPipeline:
    """The `/graphql` endpoint: each request goes through these steps, in this order.

    0. the media type of the answer (api/http/media_types.py `negotiate`): 406 when the client accepts
       neither `application/graphql-response+json` nor `application/json` (after the screen); every
       answer, refusals included, is sent in it, with `Cache-Control: no-store` (health data, and GET
       is allowed).
    1. `screen`: a client address that sent too many unauthenticated requests lately is refused (429)
       before anything else, body and ledger row included (api/protection/address_limiter.py), unless
       its key authenticated lately; a request whose credential this worker does not know counts
       as one until it authenticates (a 406 or 413 never does).
       `read_body`: at most PARTNER_API_MAX_BODY_BYTES, read here once (413 above), within
       PARTNER_API_BODY_TIMEOUT_SECONDS (408, and the connection is closed); a client that hangs up
       mid-body is recorded as CLIENT_DISCONNECTED (HTTP 499 in the ledger), not as a server error.
    2. One of the worker's places (api/protection/fair_turns.py),
       held until step 5 is done: when the worker is busy, partners take turns, round-robin, so a
       flood of one partner, served or refused, does not fill the event loop. Then `take_turn`: the
       per-partner gate, before any database work (api/protection/key_gates.py): a partner's
       requests, all keys together, run N at a time (N within its share of the connection pool), and
       while its budget refills, a request costing more than the bucket holds is refused (429).
    3. `authenticate`: the bearer key (api/identity/authentication.py), 401 for any failure; a
       key quarantined after a distinct-patient refusal gets 403 KEY_QUARANTINED, after every
       other check (api/protection/extraction.py quarantines it, `partner-api key release` frees it).
       The latest policy release, read with the key, is put in force first (api/http/policy_in_force.py).
       A key this worker authenticated before is not read again (api/identity/principal_cache.py): any
       change to it, its partner, grants, documents or the policy releases reaches every worker at once
       (PostgreSQL notifies, SQLite bumps a version row read on each hit; PARTNER_API_PRINCIPAL_CACHE).
       An OAuth access token, with its DPoP proof if bound to a key, is checked instead by
       api/identity/token_authentication.py (its client is read as a key is, on every request).
    4. `execute`: the GraphQL view (api/http/graphql_view.py), bounded by
       PARTNER_API_REQUEST_TIMEOUT_SECONDS (503). A request naming a registered document by id runs
       it, parsed, validated and priced when registered (api/documents/protocol.py); a trusted key
       runs nothing else (403). The schema's extensions run inside, in this
       order (api/schema/__init__.py): parsing under the token and nesting limits, with its cache
       (api/protection/shape_limits.py `LimitedParsing`); the shape limits, each fragment measured
       once (api/protection/rules/: operations, depth, aliases, selections, directives), before
       the specification's own rules; then the price and the budget charge
       (api/protection/cost_and_budget.py: 400 above the maximum, 429 when the budget is spent).
       Each field taking strings checks them against their `@constraint` before its resolver
       (api/protection/input_validation.py). Then the resolvers (api/schema/) read through the
       services (api/services/reads.py, writes.py) with the policy's row filter and the reading
       horizon (api/services/horizon.py); fields are guarded and the values sent recorded by the
       default resolver (api/schema/guard.py -> api/ledger/disclosure_recorder.py); new patients
       pass the distinct-patient budgets in the patient loader (api/schema/loaders.py ->
       api/protection/extraction.py). A document with a compiled plan (a registered one, or an open
       key's text once valid: api/compiled/) runs it instead, priced and charged by the same
       functions; an appointments page is then read in one SQL statement under the same row filters,
       field rules, horizon, distinct-patient admission and ledger records (api/compiled/page_run.py;
       tests/compiled/test_differential.py holds both paths to the same answers).
    5. `record`: the access ledger (api/ledger/access.py) and the refund of unspent points
       (api/protection/budgets.py), in one transaction, shared with the requests recorded at the
       same time (api/ledger/group_commit.py: one commit for those that queue while one is in
       flight; the response waits for its own). Fail closed: what cannot be recorded is not sent
       (503, `reason` DATABASE_UNAVAILABLE or LEDGER_UNAVAILABLE, `Retry-After`), and the
       whole charge is then given back in a transaction of its own, as it was taken. A
       booking, rescheduling or cancellation is not committed by step 4 (api/services/unit_of_work.py
       `write`): a served one is committed here with its access record, in its own session's
       transaction, and undone when the record cannot be written; a refused one is rolled back at
       the end of step 3. The budget charge and the distinct-patient windows keep their own commits
       in step 4, before the write (after it, they join it); a refusal's quarantine and alerts stand
       even when the write is undone (`UnitOfWork.keep`), and a quarantined key writes nothing more.
    6. `observe`: metrics (api/http/metrics.py) and the request's log line (api/http/logs.py); with
       tracing configured, steps 1 to 6 run in a `graphql.operation` span (api/http/tracing.py).

    A failure of the database outside GraphQL execution (steps 2 to 4) is a 503 (`unavailable`),
    recorded and observed like any refusal. Every step answers with an `Outcome`
    (api/http/outcome.py), so `record` and `observe` see every request, refused or served.
    Under `partner-api serve`, the app is wrapped by api/http/in_flight.py: while a request runs,
    a file names it, so that gunicorn's arbiter can record it as refused if its worker is killed
    stuck (api/operators/server.py).
    """

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        writer_lock: WriterLock,
        view: PartnerGraphQL,
        authorizer: Authorizer,
        gates: CredentialGates,
        grants: GrantCache,
        budgets: Budgets,
        extraction: ExtractionGuard,
        cursors: CursorCodec,
        tokens: TokenAuthenticator,
        addresses: AddressLimiter,
        clock: Clock = system_clock,
        policy: LivePolicy | None = None,
        tracing: OperationTracing | None = None,
        turns: FairTurns | None = None,
        principals: PrincipalCache | None = None,
        ledger: GroupCommit | None = None,
    ) -> None:
        self.settings, self.sessions, self.writer_lock, self.view = settings, sessions, writer_lock, view
        self.gates, self.grants = gates, grants
        self.budgets, self.extraction, self.cursors, self.addresses = budgets, extraction, cursors, addresses
        self.tokens = tokens  # OAuth access tokens (api/identity/token_authentication.py)
        self.clock = clock  # the one source of the request's time (api/clock.py)
        # The policy and what derives from it (the ledger groups of each sensitive field), swapped whole on reload.
        self.policy = policy or LivePolicy(PolicyInForce.of(authorizer), follows_releases=False)
        self.turns = turns or FairTurns(settings.max_concurrent_requests_per_worker)  # the worker's places, shared
        self.tracing = tracing or OperationTracing(None)  # a span per operation when configured (api/http/tracing.py)
        self.principals = principals or PrincipalCache(Uncached())  # keys authenticated before (step 3)
        # Step 5's writer: the records of concurrent requests committed together (api/ledger/group_commit.py).
        self.ledger = ledger or GroupCommit(sessions, writer_lock, budgets, clock)

    async def handle(self, request: Request) -> Response:
        """One request, through the steps above."""
        request_id = uuid.uuid4().hex
        logs.request_id.set(request_id)  # on every log line of this request
        if wants_graphiql(request):
            if not self.settings.graphiql:
                disabled = ApiError(ErrorCode.NOT_FOUND, "GraphiQL is disabled on this server.")
                return _sent_as(refused(404, disabled, request_id).response, JSON)
            return render_graphiql(request)
        with self.tracing.operation() as traced:
            started, now = time.perf_counter(), self.clock()
            media_type = negotiate(request.headers.get("accept"))
            client = self.addresses.client(request)  # the peer, or the client its trusted proxy names
            # "bearer  K" and "Bearer K" are one credential; so are "Bearer T" and "DPoP T" for a token
            credential = presented_credential(request.headers.get("authorization"))
            known = self.gates.knows(credential, client)
            # First, whatever the request: a refused address's 406s and 413s write no ledger row either
            if (screened := self.screen(known, client, request_id)) is not None:  # no database, no ledger
                self.observe(_entry(request, None, screened, request_id, now, started, client), None)
                return _sent_as(screened.response, media_type or JSON)
            read = await self.read_body(request, request_id) if media_type else _not_acceptable(request_id)
            body: bytes | None = None
            async with contextlib.AsyncExitStack() as place:  # the worker's place, held until the ledger row
                if isinstance(read, Outcome):
                    outcome = read
                    if known:  # no authentication: a known credential counts as any other until it authenticates
                        self.gates.forget(credential, client)
                        self.addresses.failed(client)
                else:
                    body = read
                    if not await place.enter_async_context(self.turns.turn(self.owner(credential, client))):
                        outcome = _too_many_waiting(request_id)
                    else:
                        try:
                            replayed = _replaying(request, body)
                            outcome = await self.take_turn(replayed, credential, client, body, request_id)
                        except Exception as error:  # the database is away, saturated or slow: a clear refusal
                            logger.exception("request %s failed outside GraphQL execution", request_id)
                            outcome = self.unavailable(error, request_id)
                    if not known and outcome.principal is not None:
                        self.addresses.forgive(client)  # counted on arrival by `screen`: it authenticated
                    elif known and outcome.status == 401:  # a key revoked since, a token expired
                        self.addresses.failed(client)
                entry = _entry(request, body, outcome, request_id, now, started, client)
                outcome, entry = await self.record(outcome, entry)
            # Metrics and the log line count the ledger write in the duration: it is part of the latency.
            entry = replace(entry, duration_ms=_elapsed_ms(started))
            self.observe(entry, outcome.principal)
            traced(entry)
        return _sent_as(outcome.response, media_type or JSON)

    async def read_body(self, request: Request, request_id: str) -> bytes | Outcome:
        """Step 1: the body, or the refusal of a body too large (bounded even without a Content-Length),
        too slow, or never finished."""
        limit, seconds = self.settings.max_body_bytes, self.settings.body_timeout_seconds
        too_large = refused(
            413,
            ApiError(
                ErrorCode.BAD_USER_INPUT,
                f"Request bodies are limited to {limit} bytes.",
                limit="max_body_bytes",
                maximum=limit,
            ),
            request_id,
            Connection="close",  # the rest of the body is never read: the connection ends with the answer
        )
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return too_large
        try:
            return await read_bounded(request, limit, seconds)
        except BodyTooLarge:
            return too_large
        except TimeoutError:  # a slow client holds a connection, never a worker's time: it is cut off
            slow = ApiError(
                ErrorCode.BAD_USER_INPUT,
                f"The request body was not received within {seconds:g} s.",
                limit="body_timeout",
                maximum=seconds,
            )
            return refused(408, slow, request_id, Connection="close")
        except ClientDisconnect:  # nobody to answer: recorded as the client's doing, not the server's
            return Outcome(Response(status_code=CLIENT_CLOSED_REQUEST), error_code=CLIENT_DISCONNECTED)

    def screen(self, known: bool, client: str | None, request_id: str) -> Outcome | None:
        """Step 1: the refusal of an address past its unauthenticated requests, or None. A request
        whose credential this worker does not know is counted as a failure now, and forgiven if it
        authenticates: a burst sent at once cannot pass before its first answers are counted. The
        refusal closes the connection: its body is never read (uvicorn would go on parsing it)."""
        if known:
            return None
        wait = self.addresses.refusal(client)
        if wait is None:
            self.addresses.failed(client)
            return None
        flood = ApiError(
            ErrorCode.RATE_LIMITED,
            f"Too many requests without a valid API key from this address; retry in {wait} s.",
            retryAfter=wait,
        )
        return refused(429, flood, request_id, Connection="close")

    def owner(self, credential: str | None, client: str | None) -> tuple[str, object]:
        """Whose turn a request takes: its partner once its credential is known, else its address."""
        partner = self.gates.partner_of(credential)
        return ("partner", partner) if partner is not None else ("address", self.addresses.subscriber(client))

    async def take_turn(
        self, request: Request, credential: str | None, client: str | None, body: bytes, request_id: str
    ) -> Outcome:
        """Step 2: waits for one of the partner's places; steps 3 and 4 run while it is held."""

        def price() -> int | None:  # only asked while the partner's budget is cooling down
            schema = self.view.schema._schema  # type: ignore[attr-defined]  # strawberry's graphql-core schema
            return price_of(schema, body, request.query_params, self.settings.max_tokens)

        async with self.gates.turn(credential, price) as refusal:
            if refusal is not None:
                # as a budget refusal says it
                limited = ApiError(ErrorCode.RATE_LIMITED, refusal.message, retryAfter=refusal.retry_after)
                return refused(429, limited, request_id, refusal.principal, **{"Retry-After": str(refusal.retry_after)})
            # its time starts once admitted
            outcome = await self.authenticate(request, credential, request_id, self.clock())
        if outcome.status == 401:  # a revoked key no longer passes the address screen, nor shares a gate
            self.gates.forget(credential, client)
        elif outcome.principal is not None:
            # A DPoP-bound token's text alone is no proof of possession: never let it stand for its partner
            # before it is checked (a thief could queue its partner's places full with it), as a key's may.
            if not _proof_bound(request):
                self.gates.learn(credential, outcome.principal)
            else:  # known all the same from there, past the address screen: a burst of it is not a flood
                self.gates.proved(credential, client)
            if outcome.metering.throttle is not None:
                refused_for_budget = outcome.metering.retry_after is not None
                self.gates.budget_read(outcome.principal, outcome.metering.throttle, refused_for_budget)
        return outcome

    async def authenticate(self, request: Request, credential: str | None, request_id: str, now: datetime) -> Outcome:
        """Step 3: the key's principal; step 4 runs on the same session, which a served write hands on
        to step 5, uncommitted (a refused one is rolled back here)."""
        session = self.sessions()
        owned: AsyncSession | None = session  # closed below, unless step 5 takes it with the write
        uow: UnitOfWork | None = None
        try:
            try:
                if credential is not None and looks_like_token(credential):  # an OAuth access token
                    principal: Principal | None = await self.tokens.authenticate(session, request, credential, now)
                else:
                    principal = await self.principals.authenticate(session, credential, now)
            except CredentialRefused as refusal:  # e.g. quarantined after an extraction refusal, until released
                return refused(refusal.status, refusal, request_id, refusal.principal, **refusal.headers)
            if principal is None:
                return refused(
                    401,
                    ApiError(ErrorCode.UNAUTHENTICATED, "A valid API key is required: `Authorization: Bearer <key>`."),
                    request_id,
                    None,
                    **{"WWW-Authenticate": 'Bearer realm="partner-api"'},
                )
            policy = await self.policy.for_release(principal.policy_version, session)
            context = self.context(session, RequestIdentity(principal, now, request_id), policy)
            uow = context.uow
            outcome = await self.execute(request, context)
            if not uow.holds_write or not outcome.served:
                return outcome  # refused: its writes are rolled back below, as the client is told nothing was done
            if uow.lost:  # served, but a later failure rolled its writes back: they must not be reported done
                lost = unavailable(
                    "The write could not be completed, so nothing was changed; retry later.", LEDGER_UNAVAILABLE
                )
                return replace(refused(503, lost, request_id, principal), metering=outcome.metering)
            handed, owned, uow = uow, None, None  # step 5 commits it with its access record, then closes it
            return replace(outcome, write=handed)
        finally:
            if uow is not None and uow.holds_write:
                with contextlib.suppress(Exception):  # what failed before matters more than the rollback
                    await uow.finish(commit=False)
            if owned is not None:
                await owned.close()

    def context(self, session: AsyncSession, identity: RequestIdentity, policy: PolicyInForce) -> GraphQLContext:
        """What the resolvers get: the request's parts, each from its layer, decided by the policy in force."""
        uow = UnitOfWork(session, policy.authorizer, identity, self.writer_lock)
        return GraphQLContext(
            identity=identity,
            uow=uow,
            fields=ReadableFields(uow, policy.authorizer, self.grants),
            disclosures=DisclosureRecorder(policy.field_groups),
            cursors=self.cursors,
            settings=self.settings,
            budgets=self.budgets,
            extraction=self.extraction,
        )

    async def execute(self, request: Request, context: GraphQLContext) -> Outcome:
        """Step 4: the operation, stopped past the request timeout."""
        seconds = self.settings.request_timeout_seconds
        try:
            async with asyncio.timeout(seconds) as deadline:
                return await self.view.serve(request, context)
        except TimeoutError:
            if not deadline.expired():
                raise
            stopped = refused(503, timed_out("request", seconds), context.identity.request_id, context.principal)
            return replace(stopped, metering=context.metering)  # what was charged before it was stopped
        finally:
            await context.uow.settle()  # no statement of the operation outlives it

    def unavailable(self, error: Exception, request_id: str) -> Outcome:
        """A database failure outside GraphQL execution (the gate, authentication, the timeout's cleanup)."""
        failure = database_refusal(error, self.settings.statement_timeout_seconds) or ApiError(
            ErrorCode.INTERNAL_SERVER_ERROR, "The service is temporarily unavailable; retry later."
        )
        return refused(503, failure, request_id)

    async def record(self, outcome: Outcome, entry: AccessEntry) -> tuple[Outcome, AccessEntry]:
        """Step 5: the access ledger and the refund, committed before the response leaves; for a served
        write, in the write's own transaction, so that neither is kept without the other."""
        try:
            if outcome.write is not None:
                await self._commit_with_write(outcome.write, outcome, entry)
            else:
                await self.ledger.commit(_work(outcome, entry))
        except Exception as error:  # fail closed: what cannot be recorded is not sent, nor kept
            logger.exception("could not write the access ledger for request %s", entry.request_id)
            away = is_database_unavailable(error)
            cause = (
                "The database is unavailable, so the access could not be recorded"
                if away
                else "The access could not be recorded"
            )
            undone = " and nothing was changed" if outcome.write is not None else ""
            unrecorded = unavailable(
                f"{cause}: no data is sent{undone}; retry later.", DATABASE_UNAVAILABLE if away else LEDGER_UNAVAILABLE
            )
            await self._refund_alone(outcome)
            outcome = replace(refused(503, unrecorded, entry.request_id), principal=outcome.principal)
            entry = replace(entry, outcome="refused", error_code=ErrorCode.INTERNAL_SERVER_ERROR.value, http_status=503)
        return outcome, entry

    async def _refund_alone(self, outcome: Outcome) -> None:
        """The ledger's transaction failed and took the refund with it: the refund is written again in a
        transaction of its own, as the charge was (no data is sent, so none of the points was spent)."""
        points = outcome.metering.charged  # nothing reaches the client: the whole charge is given back
        if outcome.principal is None or not points:
            return
        try:
            async with self.sessions() as session, self.writer_lock(session):
                await self.budgets.refund(session, outcome.principal, points, self.clock().timestamp())
                await session.commit()
        except Exception:  # the database is away: the charge then stands, as it would after a crash
            logger.exception("could not refund the budget of request %s", logs.request_id.get())

    async def _commit_with_write(self, write: UnitOfWork, outcome: Outcome, entry: AccessEntry) -> None:
        """The record joins the write's transaction (its session already holds SQLite's writer lock), not
        a group's: a write's record commits with it or not at all."""
        try:
            await self.ledger.write(write.session, [_work(outcome, entry)])
            await write.finish(commit=True)
        finally:
            if write.holds_write:  # the record failed: the write is undone with it
                with contextlib.suppress(Exception):
                    await write.finish(commit=False)
            await write.session.close()

    def observe(self, entry: AccessEntry, principal: Principal | None) -> None:
        """Step 6: metrics and the log line, labelled by partner name (empty when unknown)."""
        partner = principal.partner_name if principal else None
        metrics.observe(entry, partner)
        logs.log_request(entry, partner)


def _work(outcome: Outcome, entry: AccessEntry) -> LedgerWork:
    """What step 5 writes for a request: its record, what a served one disclosed, its unspent points."""
    disclosed = outcome.disclosures if outcome.served else None
    return LedgerWork(entry, disclosed, outcome.principal, outcome.metering.refund)


def _too_many_waiting(request_id: str) -> Outcome:
    """The worker is busy and too many of this partner's (or address's) requests already wait their turn."""
    busy = ApiError(
        ErrorCode.RATE_LIMITED, "Too many of your requests are waiting for this server; retry in 1 s.", retryAfter=1
    )
    return refused(429, busy, request_id, None, **{"Retry-After": "1"})


def _not_acceptable(request_id: str) -> Outcome:
    accepted = f"{GRAPHQL_RESPONSE} or {JSON}"
    message = f"This endpoint answers {accepted} only (an Accept header of at most {MAX_MEDIA_RANGES} media ranges)."
    # its body is never read: the connection ends with the answer (uvicorn would go on parsing it)
    return refused(406, ApiError(ErrorCode.BAD_USER_INPUT, message), request_id, Connection="close")


def _sent_as(response: Response, media_type: str) -> Response:
    """Every answer of /graphql in the negotiated media type, and never stored by a cache."""
    response.headers["Cache-Control"] = "no-store"
    if getattr(response, "body", b""):  # the 499 of a client that left has none
        response.headers["Content-Type"] = media_type
    return response


def _replaying(request: Request, body: bytes) -> Request:
    """The request as the view reads it: the same scope, its body replayed from what step 1 read."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:  # the body is over; what remains is the client leaving
            return await request.receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def _operation(request: Request, body: bytes | None) -> dict[str, Any]:
    """The request's JSON body or query string, for the ledger; empty when it is not an object."""
    if request.method == "GET":
        return dict(request.query_params)
    try:
        operation = json.loads(body or b"null")
    except (ValueError, RecursionError):  # the view has refused it already
        return {}
    fields_are_text = isinstance(operation, dict) and all(
        isinstance(operation.get(k), (str, type(None))) for k in ("query", "operationName")
    )
    return operation if fields_are_text else {}


def _proof_bound(request: Request) -> bool:
    """Whether the credential is presented under the DPoP scheme (a token only its key's holder may use)."""
    return request.headers.get("authorization", "").lstrip().lower().startswith("dpop ")


def _presented_prefix(request: Request) -> str | None:
    token = bearer_token(request.headers.get("authorization"), ("bearer", "dpop"))  # a key refused under DPoP too
    parts = split_token(token) if token else None
    return parts[0] if parts else None


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _entry(
    request: Request,
    body: bytes | None,
    outcome: Outcome,
    request_id: str,
    now: datetime,
    started: float,
    client_address: str | None,
) -> AccessEntry:
    """The ledger's line for this request."""
    operation, principal = _operation(request, body), outcome.principal
    return AccessEntry(
        request_id=request_id,
        at=now,
        partner_id=principal.partner_id if principal else None,
        key_id=principal.key_id if principal else None,
        key_prefix=principal.key_prefix if principal else _presented_prefix(request),  # the key that served
        operation_name=outcome.metering.operation_name or operation.get("operationName"),
        query=operation.get("query"),
        outcome="dry_run" if outcome.metering.dry_run is not None else "served" if outcome.served else "refused",
        error_code=outcome.error_code,
        http_status=outcome.status,
        requested_cost=outcome.metering.requested,
        actual_cost=outcome.metering.actual,
        duration_ms=_elapsed_ms(started),
        client_address=client_address,
        document_id=outcome.metering.document_id,
        client_id=principal.client_id if principal else None,
        token_jti=principal.token_jti if principal else None,
    )
