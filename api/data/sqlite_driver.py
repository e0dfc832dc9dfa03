"""SQLite's async driver with one trip to its thread per statement.

aiosqlite runs each call on a thread of its own; SQLAlchemy's adapter of it makes four trips per
statement (make a cursor, enter it, execute, fetch) and a fifth to close it. Each trip is a queue
hand-off and a wake of the event loop (about 56 µs here, more under load): a page's statements
spent more time travelling than in SQLite. This adapter makes the cursor, executes, fetches every
row and closes the cursor in one trip, through the queue aiosqlite itself uses (as SQLAlchemy's own
adapter does to set the isolation level); and it ends a transaction only when one is open.
SQLAlchemy's server-side cursors keep its adapter.

A transaction's last statement, executed with the `LAST_OF_TRANSACTION` execution options, commits
in its own trip (then the session's commit finds no transaction open, and makes none): a write
transaction, which holds the writers' lock, is one trip shorter.

    engine = create_async_engine("sqlite+aiosqlite:///app.db", module=one_trip_dbapi())
    commit_in_last_trip(engine.sync_engine)
    await connection.execute(statement, values, execution_options=LAST_OF_TRANSACTION)
    await session.commit()  # no trip: committed above
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy import Engine, event
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

__all__ = ["LAST_OF_TRANSACTION", "commit_in_last_trip", "one_trip_dbapi"]

# The statement ends its transaction: nothing may be executed in it afterwards. Harmless elsewhere
# (PostgreSQL, a plain sqlite3 driver): the session's commit commits, as always.
LAST_OF_TRANSACTION = {"last_of_transaction": True}


class _Ran:
    """What SQLAlchemy reads of a cursor once it has run: the sqlite3 cursor itself is closed."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount", "rows")

    def __init__(self, description: Any = None, rowcount: int = -1, lastrowid: int | None = None, rows: Any = ()):
        self.description, self.rowcount, self.lastrowid, self.rows = description, rowcount, lastrowid, rows
        self.arraysize = 1

    def close(self) -> None:
        pass


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool, commit: bool) -> _Ran:
    """On aiosqlite's thread: the whole statement, its rows read; and its transaction committed if `commit`."""
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
        ran = _Ran(description, cursor.rowcount, cursor.lastrowid, rows)
        if commit:
            connection.commit()
        return ran
    finally:
        cursor.close()


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("commit",)
    _awaitable_cursor_close = False  # nothing left open to close

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:  # no cursor made yet
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = _Ran()  # type: ignore[assignment]  # read as a cursor: its attributes only
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self.commit = False  # set for one statement by `commit_in_last_trip`

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._trip(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        await self._trip(operation, seq_of_parameters, many=True)

    async def _trip(self, operation: Any, parameters: Any, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]  # aiosqlite's
        commit, self.commit = self.commit, False
        async with self._adapt_connection._execute_mutex:
            ran = await connection._execute(_run, connection._conn, operation, parameters, many, commit)  # type: ignore[no-untyped-call]  # aiosqlite's queue
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


def commit_in_last_trip(engine: Engine) -> None:
    """Statements executed with `LAST_OF_TRANSACTION` on `engine` commit in their own trip."""

    @event.listens_for(engine, "before_cursor_execute")
    def last_of_transaction(
        connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if isinstance(cursor, _OneTripCursor) and context.execution_options.get("last_of_transaction"):
            cursor.commit = True


def one_trip_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI module to give the aiosqlite dialect (`create_async_engine(module=...)`)."""
    return _OneTripDBAPI(aiosqlite, sqlite3)
