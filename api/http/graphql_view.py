"""strawberry's ASGI view, with the API's error policy applied to every result.

- Errors raised on purpose (`ApiError`) keep their message and code.
- Parse and validation errors get BAD_USER_INPUT.
- A statement cancelled by the database's statement timeout is a refusal, not a failure:
  COST_LIMIT_EXCEEDED with `reason: TIMEOUT`, answered 503 when nothing could be served.
- A lost database connection is INTERNAL_SERVER_ERROR with `reason: DATABASE_UNAVAILABLE`, 503
  when nothing could be served: the client may retry.
- Anything else is masked: a generic message, INTERNAL_SERVER_ERROR and the request id; the
  exception itself is logged with that id, never sent (no stack trace or SQL to the client).

A request naming a registered document (`documentId`, or Apollo's `persistedQuery`) runs that
document; a trusted key runs nothing else (api/documents/protocol.py).

Requests the HTTP layer cannot read (not JSON, not UTF-8, a key twice in one object, nested too
deep, not an object, or holding strings no database column can store) are refused with 400 before
anything runs; a body of another content type with 415, a mutation over GET with 405 (`Allow: POST`).
The status of a response with errors follows the media type the client accepts (api/http/media_types.py),
and a request error (nothing executed) has no `data` entry, as GraphQL over HTTP asks.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.parse_content_type import parse_content_type
from strawberry.schema import BaseSchema
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult

from api.compiled.ad_hoc import AdHocPlans
from api.compiled.serve import run_plan
from api.data.failures import database_refusal
from api.documents.dry_run import wants_dry_run
from api.documents.protocol import DOCUMENT_ID, resolve_document
from api.documents.registry import DocumentRegistry
from api.errors import DATABASE_UNAVAILABLE, TIMEOUT, ApiError, ErrorCode, bad_input, recorded_code
from api.http.error_order import in_response_order
from api.http.media_types import JSON, graphql_status, negotiate
from api.http.outcome import Outcome, refused
from api.protection.cost_and_budget import CostAndBudget
from api.schema.context import GraphQLContext
from api.storable_text import holds_unstorable_text

logger = logging.getLogger("api.errors")


def _replaced(error: GraphQLError, refusal: ApiError) -> GraphQLError:
    """The error, at the same place in the document and the response, saying what `refusal` says."""
    return GraphQLError(
        str(refusal), error.nodes, error.source, error.positions, error.path, extensions=refusal.extensions
    )


# graphql-core's messages quote the value they refuse whole: a 60,000-character DateTime came back as
# long as it was sent.
MAX_MESSAGE = 1000


def _brief(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "… (cut)"


def classify(error: GraphQLError, request_id: str, statement_timeout: float = 0) -> GraphQLError:
    original = error.original_error
    if isinstance(original, ApiError):
        return error
    failure = database_refusal(original, statement_timeout)
    if failure is not None:
        if failure.extensions.get("reason") == DATABASE_UNAVAILABLE:
            # The exception as its types and frames (api.http.logs), never its text: that quotes the statement.
            logger.warning("database unavailable in request %s at %s", request_id, error.path, exc_info=original)
            failure.extensions["requestId"] = request_id
        return _replaced(error, failure)
    # graphql-core's own errors, and strawberry's coercion of an input (a DateTime that is no
    # date, an Int out of range) wrapped in one, are about the request, not the server.
    if original is None or isinstance(original, GraphQLError):
        extensions = dict(error.extensions or {})
        code = extensions.pop("code", None)
        known = code in {c.value for c in ErrorCode}  # the API's vocabulary only (deny by default)
        return _replaced(
            error, ApiError(ErrorCode(code) if known else ErrorCode.BAD_USER_INPUT, _brief(error.message), **extensions)
        )
    logger.error("unexpected error in request %s at %s", request_id, error.path, exc_info=original)
    return _replaced(
        error,
        ApiError(
            ErrorCode.INTERNAL_SERVER_ERROR,
            f"Internal error; quote request id {request_id} to the operator.",
            requestId=request_id,
        ),
    )


# HTTP status of a request refused as a whole (no data): limits and budgets answer 4xx.
REFUSAL_STATUS = {
    ErrorCode.BAD_USER_INPUT.value: 400,
    ErrorCode.COST_LIMIT_EXCEEDED.value: 400,
    ErrorCode.RATE_LIMITED.value: 429,
    ErrorCode.EXTRACTION_LIMIT_EXCEEDED.value: 429,
    ErrorCode.CHANGE_LIMIT_EXCEEDED.value: 429,
    ErrorCode.PERSISTED_QUERY_NOT_FOUND.value: 400,
    ErrorCode.TRUSTED_DOCUMENTS_ONLY.value: 403,
}


def is_request_error(result: ExecutionResult) -> bool:
    """Nothing was executed: the errors are the request's (parse, validation, coercion, a limit), none at a path."""
    return result.data is None and bool(result.errors) and all(error.path is None for error in result.errors or [])


def refusal_status(extensions: dict[str, Any] | None) -> int:
    extensions = extensions or {}
    if extensions.get("reason") in (TIMEOUT, DATABASE_UNAVAILABLE):
        return 503  # not the request's fault: the same request may pass later
    code = extensions.get("code")
    return REFUSAL_STATUS.get(code, 200) if isinstance(code, str) else 200


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


def _document_id_among_extensions(data: dict[str, Any]) -> dict[str, Any]:
    """GraphQL over HTTP's top-level `documentId`, moved among the request's extensions, which
    strawberry carries to execution (api/documents/protocol.py reads it there)."""
    if DOCUMENT_ID not in data:
        return data
    extensions = data.get("extensions") or {}
    if not isinstance(extensions, dict):
        return data  # strawberry refuses extensions that are no object
    if DOCUMENT_ID in extensions:
        raise HTTPException(400, "Send `documentId` once.")
    rest = {k: v for k, v in data.items() if k != DOCUMENT_ID}
    return {**rest, "extensions": {**extensions, DOCUMENT_ID: data[DOCUMENT_ID]}}


class PartnerGraphQL(GraphQL[GraphQLContext, None]):
    """strawberry's view, answering with an `Outcome` (see `serve`)."""

    def __init__(
        self,
        schema: BaseSchema,
        documents: DocumentRegistry,
        statement_timeout: float = 0,
        compiled: bool = False,
        ad_hoc: AdHocPlans | None = None,
    ) -> None:
        super().__init__(schema, graphql_ide=None)
        self.documents = documents
        self.compiled = compiled  # registered documents run through their compiled plan (api/compiled/)
        self.ad_hoc = ad_hoc  # and, given these, ad-hoc texts through theirs (api/compiled/ad_hoc.py)
        # plans charge as CostAndBudget does, on a schema that has it (the benchmark's no-cost one has not)
        self.metered = CostAndBudget in getattr(schema, "extensions", ())
        self.statement_timeout = statement_timeout  # seconds, for the message of a statement timeout

    def should_render_graphql_ide(self, request: Any) -> bool:
        """Never: GraphiQL has routes of its own (api/http/graphiql.py). strawberry's test, a GET with no
        `query` that accepts `*/*`, would answer 404 to curl or fetch asking for a document by id."""
        return False

    async def serve(self, request: Request, context: GraphQLContext) -> Outcome:
        """Runs the operation of `request` (its body already read) and tells what became of it."""
        request_id = context.identity.request_id
        media_type = negotiate(request.headers.get("accept")) or JSON  # the pipeline refused the unacceptable
        try:
            response = await self.run(request, context=context)
        except HTTPException as error:  # a request that is not GraphQL over HTTP with JSON
            allow = {"Allow": "POST"} if error.status_code == 405 else {}  # a mutation: only POST may run it
            return refused(error.status_code, bad_input(error.reason), request_id, context.principal, **allow)
        response.headers["X-Request-Id"] = request_id
        result, served, code = context.result, False, None
        if result is not None:
            served = result.data is not None
            if result.errors:
                code = recorded_code([(error.extensions or {}).get("code") for error in result.errors])
                if result.data is None:
                    refusal = max(refusal_status(e.extensions) for e in result.errors)
                    response.status_code = graphql_status(media_type, is_request_error(result), refusal)
                    retry = max((e.extensions or {}).get("retryAfter") or 0 for e in result.errors)
                    if retry:  # a 503 or 429 says when to come back, in the header too
                        response.headers["Retry-After"] = str(retry)
        if context.metering.retry_after is not None:
            response.headers["Retry-After"] = str(context.metering.retry_after)
        return Outcome(
            response,
            served=served and response.status_code == 200,
            error_code=code,
            principal=context.principal,
            metering=context.metering,
            disclosures=context.disclosures.disclosures() if served else None,
        )

    def encode_json(self, data: object) -> bytes:
        """The response, serialized once by orjson (json's output when orjson cannot: an integer past 64 bits)."""
        try:
            return orjson.dumps(data)
        except TypeError:
            return json.dumps(data, separators=(",", ":")).encode()

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
        names = Counter(name for name, _ in params.multi_items()) if hasattr(params, "multi_items") else Counter()
        repeated = sorted(name for name, times in names.items() if times > 1)  # linear: 9,000 names took 0.7 s
        if repeated:  # ?query=A&query=B: which one would run is the server's guess
            raise HTTPException(400, f"The parameter {json.dumps(repeated[0])} appears twice in the query string.")
        return _document_id_among_extensions(super().parse_query_params(params))

    def parse_json(self, data: str | bytes) -> Any:
        value = super().parse_json(data)
        if not isinstance(value, (dict, list)):  # a list is a batch, which strawberry refuses itself
            raise HTTPException(400, "The request must be a JSON object.")
        return _document_id_among_extensions(value) if isinstance(value, dict) else value

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "POST" and parse_content_type(request.content_type or "")[0] != JSON:
            # A form or text/plain body is what a page can send cross-site without a preflight.
            raise HTTPException(415, "Send the operation as JSON, with `Content-Type: application/json`.")
        if request.method == "POST" and request.headers.get("content-encoding", "identity").lower() != "identity":
            raise HTTPException(415, "Send the body uncompressed: no `Content-Encoding` is accepted.")
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData) and holds_unstorable_text(
            [data.query, data.operation_name, data.variables, data.extensions]
        ):
            raise HTTPException(400, "Strings may not contain U+0000 or unpaired surrogates.")
        return data

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        body = await super().process_result(request, result)
        if is_request_error(result):
            body.pop("data", None)  # GraphQL over HTTP: a request error has no `data` entry, not even null
        return body

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Any,
        context: GraphQLContext,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        try:
            request_data = await resolve_document(request_data, context, self.documents)
        except ApiError as refusal:  # an ad-hoc document on a trusted key, an unknown id
            result = ExecutionResult(data=None, errors=[GraphQLError(str(refusal), original_error=refusal)])
            context.result = result
            return result
        compiled = None
        if self.compiled:  # a registered document with its plan, or a text whose plan is known
            registered = context.document
            if registered is not None:
                plan, worst_case = registered.plan, registered.cost  # type: ignore[attr-defined]  # a RegisteredDocument
            else:
                text = request_data.query
                plan, worst_case = (self.ad_hoc.plan_of(text) if self.ad_hoc and isinstance(text, str) else None), None
            compiled = await run_plan(
                self.schema._schema,  # type: ignore[attr-defined]  # strawberry's graphql-core schema
                plan,
                worst_case,
                context,
                request_data.operation_name,
                request_data.variables,
                wants_dry_run(request_data.extensions),
                self.metered,
            )
        try:
            result = compiled or await super().execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        except HTTPException as error:
            if isinstance(error.__cause__, InvalidOperationTypeError):  # a mutation over GET
                raise HTTPException(405, error.reason) from error
            raise
        if result.errors:
            result.errors = [
                classify(error, context.identity.request_id, self.statement_timeout)
                for error in in_response_order(result.errors, result.data)
            ]
        context.result = result
        return result
