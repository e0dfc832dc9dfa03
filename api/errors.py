"""The API's one error vocabulary: every GraphQL error carries `extensions.code` from `ErrorCode`."""

from collections.abc import Sequence
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    NOT_FOUND = "NOT_FOUND"
    COST_LIMIT_EXCEEDED = "COST_LIMIT_EXCEEDED"
    RATE_LIMITED = "RATE_LIMITED"
    EXTRACTION_LIMIT_EXCEEDED = "EXTRACTION_LIMIT_EXCEEDED"
    CHANGE_LIMIT_EXCEEDED = "CHANGE_LIMIT_EXCEEDED"
    KEY_QUARANTINED = "KEY_QUARANTINED"
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    TRUSTED_DOCUMENTS_ONLY = "TRUSTED_DOCUMENTS_ONLY"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"

    @property
    def description(self) -> str:
        return ERROR_DESCRIPTIONS[self]


ERROR_DESCRIPTIONS = {
    ErrorCode.UNAUTHENTICATED: "Missing, malformed, unknown, expired or revoked key, or suspended partner (HTTP 401).",
    ErrorCode.FORBIDDEN: "The field needs a scope your grant at this practice does not have; it is null.",
    ErrorCode.BAD_USER_INPUT: "The request, an argument, an id or a cursor is invalid.",
    ErrorCode.NOT_FOUND: "No such object, or none you may see (the two are indistinguishable).",
    ErrorCode.COST_LIMIT_EXCEEDED: (
        "The operation costs more than the maximum per request, or ran past a timeout (`reason: TIMEOUT`)."
    ),
    ErrorCode.RATE_LIMITED: "Your cost budget is spent; retry after the delay given.",
    ErrorCode.EXTRACTION_LIMIT_EXCEEDED: (
        "Too many distinct patients of a practice read; the operator is alerted (HTTP 429)."
    ),
    ErrorCode.CHANGE_LIMIT_EXCEEDED: (
        "Too many appointments you did not book changed at a practice today; the operator is alerted (HTTP 429)."
    ),
    ErrorCode.KEY_QUARANTINED: (
        "This key was quarantined after a distinct-patient or change-limit refusal; ask the operator to release it "
        "(HTTP 403)."
    ),
    ErrorCode.PERSISTED_QUERY_NOT_FOUND: (
        "No registered document of yours has this `documentId` (or `sha256Hash`): register your build's manifest."
    ),
    ErrorCode.TRUSTED_DOCUMENTS_ONLY: (
        "This key is trusted: it runs only your registered documents, sent by `documentId` (HTTP 403)."
    ),
    ErrorCode.INTERNAL_SERVER_ERROR: "Unexpected failure; quote `requestId` to the operator.",
}


# What a request is recorded under (the ledger's `error_code`, metrics, logs) when its answer holds
# several errors: a refusal by the bounds on exposure first, which operators watch, though a field
# forbidden earlier in the document came first in the answer; else the answer's first error. (A
# quarantined key is refused whole, at authentication: its answer holds nothing else.)
_RECORDED_FIRST = (ErrorCode.EXTRACTION_LIMIT_EXCEEDED, ErrorCode.CHANGE_LIMIT_EXCEEDED)


def recorded_code(codes: Sequence[str | None]) -> str | None:
    """The code among an answer's error codes (in their order) that its request is recorded under."""
    return min(codes, key=lambda code: _RECORDED_FIRST.index(code) if code in _RECORDED_FIRST else len(_RECORDED_FIRST))


class ApiError(Exception):
    """An error meant for the client: its message and code are shown as they are."""

    def __init__(self, code: ErrorCode, message: str, **extensions: object) -> None:
        super().__init__(message)
        self.extensions = {"code": code.value, **extensions}


def error_body(error: ApiError, **extensions: object) -> dict[str, Any]:
    """The JSON body of a request refused before GraphQL could answer, in GraphQL's own error shape
    (`{"errors": [{"message", "extensions": {"code", ...}}]}`), so clients parse one shape only."""
    return {"errors": [{"message": str(error), "extensions": {**error.extensions, **extensions}}]}


def not_found(what: str = "object") -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"No such {what}.")


def bad_input(message: str, **extensions: object) -> ApiError:
    return ApiError(ErrorCode.BAD_USER_INPUT, message, **extensions)


class FieldForbidden(ApiError):
    """A field the partner may not read, because its grant lacks the scope, or because the record is
    outside the grant's reading horizon (the field is readable inside it: `reason` says so)."""

    def __init__(self, field: str, outside_horizon: bool = False) -> None:
        if outside_horizon:
            super().__init__(
                ErrorCode.FORBIDDEN,
                f"{field} is readable only inside your grant's reading horizon, and this record is outside it "
                "(`viewer { grants { daysBack daysAhead historyUntil } }`).",
                field=field,
                reason=OUTSIDE_READING_HORIZON,
            )
        else:
            super().__init__(
                ErrorCode.FORBIDDEN, f"Your grant at this practice does not allow reading {field}.", field=field
            )


OUTSIDE_READING_HORIZON = "OUTSIDE_READING_HORIZON"  # FORBIDDEN's `reason` when the horizon withholds the field


# `extensions.reason`: why a request was refused although it was not at fault, so the same request
# may pass later (HTTP 503, with `Retry-After` and `extensions.retryAfter`).
TIMEOUT = "TIMEOUT"  # time ran out (the request's or a statement's)
DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
LEDGER_UNAVAILABLE = "LEDGER_UNAVAILABLE"  # the access record could not be written: nothing was sent, no write was kept
RETRY_AFTER_SECONDS = 5  # told with a 503: about what a PostgreSQL restart or failover takes

# Not a code a client receives: the ledger's and the metrics' `error_code` of a request whose client
# hung up before its body was complete (recorded with HTTP status 499, nginx's "client closed request").
CLIENT_DISCONNECTED = "CLIENT_DISCONNECTED"
CLIENT_CLOSED_REQUEST = 499


def unavailable(message: str, reason: str) -> ApiError:
    """A refusal that is not the request's fault: INTERNAL_SERVER_ERROR with its `reason` and when to retry."""
    return ApiError(ErrorCode.INTERNAL_SERVER_ERROR, message, reason=reason, retryAfter=RETRY_AFTER_SECONDS)


def timed_out(limit: str, seconds: float) -> ApiError:
    """The request (`limit="request"`) or one of its database statements (`"statement"`) ran past its
    timeout. The closest code of the vocabulary: the operation cost more than a request may spend."""
    return ApiError(
        ErrorCode.COST_LIMIT_EXCEEDED,
        f"The {limit} ran past its {seconds:g} s timeout and was stopped; ask for smaller pages, or retry later.",
        reason=TIMEOUT,
        limit=f"{limit}_timeout",
        maximum=seconds,
    )
