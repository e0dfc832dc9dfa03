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
    use_trip_options(engine.sync_engine)
    await connection.execute(statement, values, execution_options=LAST_OF_TRANSACTION)
    await session.commit()  # no trip: committed above

Statements executed with the `DEFERRED` execution options are not sent at once: they run, in order,
in the trip of the transaction's next statement or of its commit (nothing of them is read back: a
ledger record and its disclosures, api/ledger/access.py). The workers' turns as SQLite's writer
(api/data/process_lock.py) are taken and given back on the thread too, within the trips: in a
session's writer scope (`writer_turn`), a transaction's first trip takes the turn and the trip of
its commit or rollback gives it back, so that it lasts as long as SQLite's work and no longer. A
trip whose request is cancelled while it waits for the turn gives up there and runs nothing.
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
from sqlalchemy import Engine, event
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.util import EMPTY_DICT, await_

from api.data.process_lock import ProcessLock, WriterTurn

__all__ = ["DEFERRED", "LAST_OF_TRANSACTION", "one_trip_dbapi", "use_trip_options", "writer_turn"]

# The statement ends its transaction: nothing may be executed in it afterwards. Harmless elsewhere
# (PostgreSQL, a plain sqlite3 driver): the session's commit commits, as always.
LAST_OF_TRANSACTION = {"last_of_transaction": True}
# The statement runs in the trip of the transaction's next statement or commit; its result is empty.
# Elsewhere it runs at once, as any other.
DEFERRED = {"deferred": True}

# A statement left for the next trip: its text, parameters, and whether they are many rows'.
_Deferred = tuple[str, Any, bool]


class _Ran:
    """What SQLAlchemy reads of a cursor once it has run: the sqlite3 cursor itself is closed."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount", "rows")

    def __init__(self, description: Any = None, rowcount: int = -1, lastrowid: int | None = None, rows: Any = ()):
        self.description, self.rowcount, self.lastrowid, self.rows = description, rowcount, lastrowid, rows
        self.arraysize = 1

    def close(self) -> None:
        pass


def _run(
    connection: sqlite3.Connection,
    operation: str | None,
    parameters: Any,
    many: bool,
    commit: bool,
    turn: WriterTurn | None = None,
    deferred: tuple[_Deferred, ...] = (),
    stop: threading.Event | None = None,
) -> _Ran:
    """On aiosqlite's thread: the writers' turn taken if the transaction has one, the statements
    deferred, then the statement (none: only the commit) with its rows read; and the transaction
    committed if `commit`, which gives the turn back. A trip that was to commit and fails rolls
    the transaction back: SQLAlchemy takes a failed commit for a transaction ended, and would give
    the connection back to its pool with the transaction open (SQLite's writer lock held). A trip
    whose caller stopped waiting (`stop`: a cancelled request) runs nothing once it has its turn."""
    cursor = connection.cursor()
    try:
        if turn is not None:
            turn.take(stop)
        if stop is not None and stop.is_set():
            raise sqlite3.OperationalError("the trip's caller stopped waiting for it: nothing was run")
        for text, values, of_many in deferred:
            _execute(cursor, text, values, of_many)
        ran = _Ran()
        if operation is not None:
            _execute(cursor, operation, parameters, many)
            description = cursor.description
            rows = cursor.fetchall() if description else ()  # first: sqlite3 counts RETURNING rows as they are read
            ran = _Ran(description, cursor.rowcount, cursor.lastrowid, rows)
        if commit:
            connection.commit()
            if turn is not None:
                turn.give_back()
        return ran
    except BaseException:
        if commit or not connection.in_transaction:  # ended here: undone, and the turn given back
            with contextlib.suppress(sqlite3.Error):  # what failed is what the caller is told
                _roll_back(connection, turn)
        raise
    finally:
        cursor.close()


def _execute(cursor: sqlite3.Cursor, operation: str, parameters: Any, many: bool) -> None:
    if many:
        cursor.executemany(operation, parameters)
    elif parameters is None:
        cursor.execute(operation)
    else:
        cursor.execute(operation, parameters)


def _roll_back(connection: sqlite3.Connection, turn: WriterTurn | None) -> None:
    """On aiosqlite's thread: the transaction undone, and the turn given back."""
    try:
        connection.rollback()
    finally:
        if turn is not None:
            turn.give_back()


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("commit", "defer")
    _awaitable_cursor_close = False  # nothing left open to close

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:  # no cursor made yet
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = _Ran()  # type: ignore[assignment]  # read as a cursor: its attributes only
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self.commit = False  # set for one statement by `use_trip_options`
        self.defer = False  # likewise

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._trip(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        await self._trip(operation, seq_of_parameters, many=True)

    async def _trip(self, operation: Any, parameters: Any, many: bool) -> None:
        adapted: _OneTripConnection = self._adapt_connection  # type: ignore[assignment]  # made by _OneTripDBAPI
        commit, self.commit = self.commit, False
        defer, self.defer = self.defer, False
        self._rows = collections.deque()
        if defer:
            adapted.deferred.append((operation, parameters, many))
            self._cursor = _Ran()  # type: ignore[assignment]  # read as a cursor: its attributes only
            return
        async with adapted._execute_mutex:
            ran = await adapted.run(operation, parameters, many, commit)
        self._cursor = ran  # type: ignore[assignment]
        self._rows = collections.deque(ran.rows)


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("deferred", "turn")
    _cursor_cls = _OneTripCursor  # type: ignore[assignment]  # a subclass; SQLAlchemy declares the exact class

    def __init__(self, dbapi: Any, connection: Any) -> None:  # aiosqlite's
        super().__init__(dbapi, connection)
        self.deferred: list[_Deferred] = []  # run by the next trip
        self.turn: WriterTurn | None = None  # set by `writer_turn`

    async def run(self, operation: str | None, parameters: Any, many: bool, commit: bool) -> _Ran:
        """One trip: the deferred statements, then this one (or none), committed if `commit`."""
        deferred, self.deferred = tuple(self.deferred), []
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]  # aiosqlite's
        stop = threading.Event()
        arguments = (operation, parameters, many, commit, self.turn, deferred, stop)
        trip = connection._execute(_run, connection._conn, *arguments)  # type: ignore[no-untyped-call]
        try:
            ran: _Ran = await trip
        except BaseException:  # cancelled: a trip still waiting for its turn gives up, and runs nothing
            stop.set()
            raise
        return ran

    # No trip when there is no transaction to end: the pool rolls back every connection it takes back,
    # and a request's reads (which begin none in sqlite3's default mode) were four such trips a page.
    def rollback(self) -> None:
        self.deferred.clear()
        if not self._in_transaction():
            if self.turn is not None:
                self.turn.give_back()
            return
        try:
            connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]  # aiosqlite's
            await_(connection._execute(_roll_back, connection._conn, self.turn))  # type: ignore[no-untyped-call]
        except Exception as error:
            self._handle_exception(error)

    def commit(self) -> None:
        if not self.deferred and not self._in_transaction():
            if self.turn is not None:
                self.turn.give_back()
            return
        try:
            await_(self.run(None, None, False, commit=True))
        except Exception as error:
            self._handle_exception(error)

    def _in_transaction(self) -> bool:
        connection: sqlite3.Connection | None = self._connection._connection  # None once closed
        return connection is not None and connection.in_transaction


class _OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        return _OneTripConnection(self, super().connect(*arg, **kw)._connection)


def use_trip_options(engine: Engine) -> None:
    """On `engine`, statements executed with `LAST_OF_TRANSACTION` commit in their own trip, those
    with `DEFERRED` go with the next; and a connection goes back to its pool without a writer's turn
    (a transaction begun on it by another session takes none)."""

    @event.listens_for(engine, "before_cursor_execute")
    def trip_options(
        connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if isinstance(cursor, _OneTripCursor):
            cursor.commit = bool(context.execution_options.get("last_of_transaction"))
            cursor.defer = bool(context.execution_options.get("deferred"))

    @event.listens_for(engine, "checkin")
    def without_turn(dbapi_connection: Any, record: Any) -> None:
        if isinstance(dbapi_connection, _OneTripConnection):
            dbapi_connection.turn = None


def one_trip_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI module to give the aiosqlite dialect (`create_async_engine(module=...)`)."""
    return _OneTripDBAPI(aiosqlite, sqlite3)


_TURN = "sqlite writer turn"  # in a session's `info` while its scope is open: the turn, the connections given it


@asynccontextmanager
async def writer_turn(session: AsyncSession, lock: ProcessLock) -> AsyncIterator[None]:
    """The session's write transactions in this scope take the workers' turn as SQLite's writer, on
    the driver's thread (see the module's docstring), whichever connection each begins on (a commit
    or rollback gives the connection back to the pool, and the next statement takes one); leaving
    the scope gives the turn back for good."""
    turn, given = lock.turn(), list[_OneTripConnection]()
    session.info[_TURN] = (turn, given)
    try:
        _attach(session.sync_session, None, (await session.connection()).sync_connection)
        yield
    finally:
        del session.info[_TURN]
        for adapted in given:
            if adapted.turn is turn:  # else back in the pool, which took it away
                adapted.turn = None
        turn.end()


@event.listens_for(Session, "after_begin")
def _attach(session: Session, transaction: Any, connection: Any) -> None:
    """A connection the session begins on within a writer's scope carries its turn."""
    scope = session.info.get(_TURN)
    if scope is None:
        return
    adapted, (turn, given) = connection.connection.dbapi_connection, scope
    if isinstance(adapted, _OneTripConnection):
        adapted.turn = turn
        given.append(adapted)
