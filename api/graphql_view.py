"""strawberry's ASGI view, with the API's error policy applied to every result.

- Errors raised on purpose (`ApiError`) keep their message and code.
- Parse and validation errors get BAD_USER_INPUT.
- Anything else is masked: a generic message, INTERNAL_SERVER_ERROR and the request id; the
  exception itself is logged with that id, never sent (no stack trace or SQL to the client).
"""

from __future__ import annotations

import logging

from graphql import ExecutionResult, GraphQLError
from starlette.requests import Request
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse

from api.errors import ApiError, ErrorCode

logger = logging.getLogger("api.errors")


def classify(error: GraphQLError, request_id: str) -> GraphQLError:
    original = error.original_error
    if isinstance(original, ApiError):
        return error
    if original is None:
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


class PartnerGraphQL(GraphQL):
    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        request.state.served = result.data is not None
        if result.errors:
            request_id = getattr(request.state, "request_id", "-")
            result.errors = [classify(error, request_id) for error in result.errors]
            request.state.error_code = (result.errors[0].extensions or {}).get("code")
            if result.data is None:
                statuses = [REFUSAL_STATUS.get((e.extensions or {}).get("code"), 200) for e in result.errors]
                request.state.http_status = max(statuses)
        return await super().process_result(request, result)
