"""What a database error means for the client: a statement the database stopped, or a database
out of reach. The request path (api/http/pipeline.py) and the GraphQL view classify failures
with these, whichever layer wrapped the driver's error."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError, DisconnectionError, PendingRollbackError

from api.errors import DATABASE_UNAVAILABLE, ApiError, timed_out, unavailable

__all__ = ["QUERY_CANCELED", "database_refusal", "is_database_unavailable", "is_statement_timeout"]

QUERY_CANCELED = "57014"  # SQLSTATE of a statement stopped by statement_timeout
# SQLSTATEs of a server that is not there for us: class 08 (connection exception), and 57P01-57P03
# (shut down by an administrator, crashed, starting up or shutting down).
_UNREACHABLE_CLASS, _UNAVAILABLE_STATES = "08", frozenset({"57P01", "57P02", "57P03"})


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
    """The database cannot be reached (refused, unresolvable, starting or shutting down), the connection
    to it was lost, the session still holds the transaction it lost, or SQLite stayed locked by another
    writer past its busy timeout."""
    return any(
        # ConnectionError, gaierror: the socket was refused or reset, or the name did not resolve.
        isinstance(cause, (DisconnectionError, PendingRollbackError, ConnectionError, socket.gaierror))
        or _unavailable_state(getattr(cause, "sqlstate", None))
        or (isinstance(cause, DBAPIError) and cause.connection_invalidated)
        or (
            isinstance(cause, sqlite3.OperationalError)
            and getattr(cause, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
        )
        for cause in _causes(error)
    )


def _unavailable_state(sqlstate: object) -> bool:
    return isinstance(sqlstate, str) and (sqlstate.startswith(_UNREACHABLE_CLASS) or sqlstate in _UNAVAILABLE_STATES)


def database_refusal(error: BaseException | None, statement_timeout: float) -> ApiError | None:
    """What the client is told of a database failure (a statement stopped by its timeout, a database
    out of reach), wherever it surfaced; None when the error is no such failure."""
    if is_statement_timeout(error):
        return timed_out("statement", statement_timeout)
    if is_database_unavailable(error):
        return unavailable("The database is temporarily unavailable; retry later.", DATABASE_UNAVAILABLE)
    return None
