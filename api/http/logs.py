"""Structured logs: one JSON object per line, carrying the request id; never personal data.

Each request to /graphql logs one line with what the operator needs to follow it: request id,
partner, operation name, outcome, code, HTTP status, costs and duration. Never variables, query
texts or response data, nor the client's key. An exception is logged as its types and stack
frames without its message: a database error's message quotes the statement's parameters.
uvicorn's access log is off, since it would log GET query strings (documents and variables).
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from api.ledger.access import AccessEntry

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
request_logger = logging.getLogger("api.requests")
# An operation name as GraphQL spells one; anything else came from a request body unparsed.
OPERATION_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,99}")


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON: time, level, logger, message, the request id and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (current := request_id.get()) is not None:
            line["request_id"] = current
        line.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[1] is not None:
            line["exception"] = _exception(record.exc_info[1], record.exc_info[2])
        return json.dumps(line, ensure_ascii=False, default=str)


def _exception(error: BaseException, tb: TracebackType | None) -> dict[str, Any]:
    chain: list[str] = []
    cause: BaseException | None = error
    while cause is not None and len(chain) < 5:
        chain.append(f"{type(cause).__module__}.{type(cause).__qualname__}")
        cause = cause.__cause__ or cause.__context__
    frames = [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in traceback.extract_tb(tb)]
    return {"types": chain, "stack": frames}


def log_request(entry: AccessEntry, partner: str | None) -> None:
    """The one line a request to /graphql logs, from its ledger entry (the fields without personal data)."""
    request_logger.info(
        "request",
        extra={
            "fields": {
                "request_id": entry.request_id,
                "partner": partner,
                "operation": entry.operation_name if OPERATION_NAME.fullmatch(entry.operation_name or "") else None,
                "outcome": entry.outcome,
                "code": entry.error_code,
                "status": entry.http_status,
                "requested_cost": entry.requested_cost,
                "actual_cost": entry.actual_cost,
                "duration_ms": entry.duration_ms,
            }
        },
    )


def log_config(level: str) -> dict[str, Any]:
    """`logging.config.dictConfig` settings for `serve` (gunicorn applies them in its arbiter and every worker)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "api.http.logs.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
