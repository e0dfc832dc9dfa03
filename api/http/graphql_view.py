"""strawberry's ASGI view, with the API's error policy applied to every result.

- Errors raised on purpose (`ApiError`) keep their message and code.
- Parse and validation errors get BAD_USER_INPUT.
- A statement cancelled by the database's statement timeout is a refusal, not a failure:
  COST_LIMIT_EXCEEDED with `reason: TIMEOUT`, answered 503 when nothing could be served.
- A lost database connection is INTERNAL_SERVER_ERROR with `reason: DATABASE_UNAVAILABLE`, 503
  when nothing could be served: the client may retry.
- Anything else is masked: a generic message, INTERNAL_SERVER_ERROR and the request id; the
  exception itself is logged with that id, never sent (no stack trace or SQL to the client).

Requests the HTTP layer cannot read (not JSON, not UTF-8, a key twice in one object, nested too
deep, not an object, or holding strings no database column can store) are refused with 400 before
anything runs.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

from cross_web import HTTPException
from graphql import ExecutionResult, GraphQLError
from sqlalchemy.exc import DBAPIError, DisconnectionError, PendingRollbackError
from starlette.requests import Request
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData

from api.errors import TIMEOUT, ApiError, ErrorCode, timed_out

logger = logging.getLogger("api.errors")


# U+0000 and unpaired surrogates: PostgreSQL text cannot hold the first, UTF-8 cannot encode the second.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
QUERY_CANCELED = "57014"  # SQLSTATE of a statement stopped by statement_timeout
DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"  # `extensions.reason` of an INTERNAL_SERVER_ERROR


def holds_unstorable_text(value: Any) -> bool:
    """True when a string anywhere in a decoded JSON value (keys included) holds U+0000 or a lone surrogate."""
    pending = [value]
    while pending:  # not recursive: the value may be nested as deep as the JSON parser allows
        item = pending.pop()
        if isinstance(item, str):
            if UNSTORABLE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    """The error and what it wraps, whichever layer wrapped it (SQLAlchemy's `orig`, `raise from`)."""
    for _ in range(10):
        if error is None:
            return
        yield error
        error = getattr(error, "orig", None) or error.__cause__


def is_statement_timeout(error: BaseException | None) -> bool:
    """The database cancelled a statement (statement_timeout)."""
    return any(getattr(cause, "sqlstate", None) == QUERY_CANCELED for cause in _causes(error))


def is_database_unavailable(error: BaseException | None) -> bool:
    """The connection to the database was lost, the session still holds the transaction it lost,
    or SQLite stayed locked by another writer past its busy timeout."""
    return any(
        isinstance(cause, (DisconnectionError, PendingRollbackError))
        or (isinstance(cause, DBAPIError) and cause.connection_invalidated)
        or (isinstance(cause, sqlite3.OperationalError) and getattr(cause, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY)
        for cause in _causes(error)
    )


def classify(error: GraphQLError, request_id: str, statement_timeout: float = 0) -> GraphQLError:
    original = error.original_error
    if isinstance(original, ApiError):
        return error
    if is_statement_timeout(original):
        refusal = timed_out("statement", statement_timeout)
        return GraphQLError(str(refusal), error.nodes, error.source, error.positions, error.path, extensions=refusal.extensions)
    if is_database_unavailable(original):
        logger.warning("database unavailable in request %s at %s: %s", request_id, error.path, original)
        return GraphQLError(
            "The database is temporarily unavailable; retry later.", error.nodes, error.source, error.positions, error.path,
            extensions={"code": ErrorCode.INTERNAL_SERVER_ERROR.value, "reason": DATABASE_UNAVAILABLE, "requestId": request_id},
        )
    # graphql-core's own errors, and strawberry's coercion of an input (a DateTime that is no
    # date, an Int out of range) wrapped in one, are about the request, not the server.
    if original is None or isinstance(original, GraphQLError):
        code = (error.extensions or {}).get("code") or ErrorCode.BAD_USER_INPUT.value
        return GraphQLError(error.message, error.nodes, error.source, error.positions, error.path,
                            extensions={**(error.extensions or {}), "code": code})
    logger.error("unexpected error in request %s at %s", request_id, error.path, exc_info=original)
    return GraphQLError(
        f"Internal error; quote request id {request_id} to the operator.",
        error.nodes, error.source, error.positions, error.path,
        extensions={"code": ErrorCode.INTERNAL_SERVER_ERROR.value, "requestId": request_id},
    )


# HTTP status of a request refused as a whole (no data): limits and budgets answer 4xx.
REFUSAL_STATUS = {
    ErrorCode.BAD_USER_INPUT.value: 400,
    ErrorCode.COST_LIMIT_EXCEEDED.value: 400,
    ErrorCode.RATE_LIMITED.value: 429,
    ErrorCode.EXTRACTION_LIMIT_EXCEEDED.value: 429,
}


def refusal_status(extensions: dict[str, Any] | None) -> int:
    extensions = extensions or {}
    if extensions.get("reason") in (TIMEOUT, DATABASE_UNAVAILABLE):
        return 503  # not the request's fault: the same request may pass later
    return REFUSAL_STATUS.get(extensions.get("code"), 200)


class DuplicateKey(ValueError):
    """A JSON object names the same key twice: parsers disagree on which wins (RFC 8259 §4), so a
    request whose `query` appears twice could pass a check with one and run the other."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(json.dumps(key[:50]))
            seen.add(key)
    return value


class PartnerGraphQL(GraphQL):
    statement_timeout: float = 0  # seconds, for the message of a statement timeout

    def decode_json(self, data: str | bytes) -> object:
        try:
            # Decoded here: json.loads would take UTF-16 and UTF-32 bytes as well (RFC 8259 §8.1: UTF-8 only).
            text = data.decode("utf-8") if isinstance(data, bytes) else data
        except UnicodeDecodeError as error:
            raise HTTPException(400, "The request body must be JSON encoded in UTF-8.") from error
        try:
            return json.loads(text, object_pairs_hook=_unique_keys)
        except DuplicateKey as error:
            raise HTTPException(400, f"The key {error} appears twice in one JSON object.") from error
        except (ValueError, RecursionError) as error:  # nested too deep, a 5,000-digit number, a BOM...
            raise HTTPException(400, "Unable to parse request body as JSON") from error

    def parse_query_params(self, params: Any) -> dict[str, Any]:
        names = [name for name, _ in params.multi_items()] if hasattr(params, "multi_items") else []
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:  # ?query=A&query=B: which one would run is the server's guess
            raise HTTPException(400, f"The parameter {json.dumps(repeated[0])} appears twice in the query string.")
        return super().parse_query_params(params)

    def parse_json(self, data: str | bytes) -> Any:
        value = super().parse_json(data)
        if not isinstance(value, (dict, list)):  # a list is a batch, which strawberry refuses itself
            raise HTTPException(400, "The request must be a JSON object.")
        return value

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData) and holds_unstorable_text(
            [data.query, data.operation_name, data.variables, data.extensions]
        ):
            raise HTTPException(400, "Strings may not contain U+0000 or unpaired surrogates.")
        return data

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        request.state.served = result.data is not None
        if result.errors:
            request_id = getattr(request.state, "request_id", "-")
            result.errors = [classify(error, request_id, self.statement_timeout) for error in result.errors]
            request.state.error_code = (result.errors[0].extensions or {}).get("code")
            if result.data is None:
                request.state.http_status = max(refusal_status(e.extensions) for e in result.errors)
        return await super().process_result(request, result)
