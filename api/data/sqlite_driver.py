"""SQLite's async driver with one trip to its thread per statement.

aiosqlite runs each call on a thread of its own; SQLAlchemy's adapter of it makes four trips per
statement (make a cursor, enter it, execute, fetch) and a fifth to close it. Each trip is a queue
hand-off and a wake of the event loop (about 56 µs here, more under load): a page's statements
spent more time travelling than in SQLite. This adapter makes the cursor, executes, fetches every
row and closes the cursor in one trip, through the queue aiosqlite itself uses (as SQLAlchemy's own
adapter does to set the isolation level); and it ends a transaction only when one is open.
SQLAlchemy's server-side cursors keep its adapter.

    create_async_engine("sqlite+aiosqlite:///app.db", module=one_trip_dbapi())
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

__all__ = ["one_trip_dbapi"]


class _Ran:
    """What SQLAlchemy reads of a cursor once it has run: the sqlite3 cursor itself is closed."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount", "rows")

    def __init__(self, description: Any = None, rowcount: int = -1, lastrowid: int | None = None, rows: Any = ()):
        self.description, self.rowcount, self.lastrowid, self.rows = description, rowcount, lastrowid, rows
        self.arraysize = 1

    def close(self) -> None:
        pass


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Ran:
    """On aiosqlite's thread: the whole statement, its rows read."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else ()  # first: sqlite3 counts RETURNING rows as they are read
        return _Ran(description, cursor.rowcount, cursor.lastrowid, rows)
    finally:
        cursor.close()


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    _awaitable_cursor_close = False  # nothing left open to close

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:  # no cursor made yet
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = _Ran()  # type: ignore[assignment]  # read as a cursor: its attributes only
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._trip(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        await self._trip(operation, seq_of_parameters, many=True)

    async def _trip(self, operation: Any, parameters: Any, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]  # aiosqlite's
        async with self._adapt_connection._execute_mutex:
            ran = await connection._execute(_run, connection._conn, operation, parameters, many)  # type: ignore[no-untyped-call]  # aiosqlite's queue
        self._cursor = ran
        self._rows = collections.deque(ran.rows)


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneTripCursor  # type: ignore[assignment]  # a subclass; SQLAlchemy declares the exact class

    # No trip when there is no transaction to end: the pool rolls back every connection it takes back,
    # and a request's reads (which begin none in sqlite3's default mode) were four such trips a page.
    def rollback(self) -> None:
        if self._in_transaction():
            super().rollback()

    def commit(self) -> None:
        if self._in_transaction():
            super().commit()

    def _in_transaction(self) -> bool:
        connection: sqlite3.Connection | None = self._connection._connection  # None once closed
        return connection is not None and connection.in_transaction


class _OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        return _OneTripConnection(self, super().connect(*arg, **kw)._connection)


def one_trip_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI module to give the aiosqlite dialect (`create_async_engine(module=...)`)."""
    return _OneTripDBAPI(aiosqlite, sqlite3)
