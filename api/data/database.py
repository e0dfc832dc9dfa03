"""Engines and sessions: async for the request path, sync for the CLI, seeding and migrations."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import QueuePool

from api.data.process_lock import ProcessLock
from api.data.sqlite_driver import one_trip_dbapi, use_trip_options, writer_turn

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
SYNC_DRIVERS = {"sqlite": "sqlite+pysqlite", "postgresql": "postgresql+psycopg"}
# A statement's parameters are patients' names, phones, e-mails: SQLAlchemy leaves them out of its
# exception messages and logs, so no log line or traceback can quote them.
PRIVATE_PARAMETERS = {"hide_parameters": True}


def _with_driver(url: str | URL, drivers: dict[str, str]) -> URL:
    url = make_url(url)
    backend = url.get_backend_name()
    if backend not in drivers:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    return url.set(drivername=drivers[backend])


def sync_url(url: str | URL) -> URL:
    return _with_driver(url, SYNC_DRIVERS)


def async_url(url: str | URL) -> URL:
    return _with_driver(url, ASYNC_DRIVERS)


DEFAULT_BUSY_TIMEOUT_MS = 5000


def busy_timeout_ms(statement_timeout_seconds: float) -> int:
    """How long a SQLite writer waits for another: the statement timeout, or 5 s."""
    return round(statement_timeout_seconds * 1000) or DEFAULT_BUSY_TIMEOUT_MS


def _configure_sqlite(engine: Engine, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:  # SQLAlchemy's DBAPI event: untyped
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")  # waiting for another writer
        # In WAL mode, NORMAL survives an application crash and fsyncs only at checkpoints.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def make_sync_engine(url: str | URL) -> Engine:
    engine = create_engine(sync_url(url), **PRIVATE_PARAMETERS)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def make_async_engine(url: str | URL, statement_timeout_seconds: float = 0, **kwargs: object) -> AsyncEngine:
    """The request path's engine; on PostgreSQL, every statement is cancelled past the timeout (0: none);
    on SQLite, a statement waits that long at most for another writer."""
    url = async_url(url)
    if url.get_backend_name() == "postgresql":
        # asyncpg prepares every statement, and from a statement's sixth run the server may switch to a
        # generic plan, blind to the request's values: for the page's patients (an IN list of ids within
        # the granted practices) it then walks every patient of each practice, 19x slower on the medium
        # set (bench/results/plans-postgresql.txt). Planning each run costs a fraction of a millisecond.
        server_settings = {"plan_cache_mode": "force_custom_plan"}
        if statement_timeout_seconds:
            # The server cancels the statement, even when the client is stuck.
            server_settings["statement_timeout"] = str(max(1, round(statement_timeout_seconds * 1000)))
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), "server_settings": server_settings}  # type: ignore[dict-item]  # asyncpg's own keyword
    else:
        kwargs.setdefault("module", one_trip_dbapi())  # one trip to aiosqlite's thread per statement
    engine = create_async_engine(url, **{**kwargs, **PRIVATE_PARAMETERS})
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine.sync_engine, busy_timeout_ms(statement_timeout_seconds))
        use_trip_options(engine.sync_engine)
    return engine


def pool_capacity(engine: AsyncEngine) -> int | None:
    """Connections the engine's pool may hand out at once (its size plus its overflow); None when unbounded."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):
        return None
    overflow: int = pool._max_overflow  # no public reader; SQLAlchemy's own tests read it too
    return None if overflow < 0 else pool.size() + overflow


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


# What a session holds around a write transaction (see `sqlite_writer_lock`).
WriterLock = Callable[[AsyncSession], AbstractAsyncContextManager[None]]


def sqlite_writer_lock(engine: AsyncEngine, statement_timeout_seconds: float = 0) -> WriterLock:
    """SQLite's single writer, one transaction at a time: a session holds this around a write transaction.

    SQLite lets one writer in at a time and makes the others poll (busy_timeout): under load a
    writer can keep missing its turn until it fails with "database is locked". Instead, the writers
    of every worker on a database file take turns on a file lock beside it, on the driver's thread
    (api/data/process_lock.py, api/data/sqlite_driver.py `writer_turn`), for as long as SQLite would
    wait. A database without a file (in memory) has one process: its writers queue in the event
    loop. PostgreSQL locks rows and needs no such lock: there, holding it costs nothing.
    """
    sqlite = engine.dialect.name == "sqlite"
    file = _database_file(engine.url) if sqlite else None
    between = ProcessLock(Path(f"{file}-writer"), busy_timeout_ms(statement_timeout_seconds) / 1000) if file else None
    in_process = asyncio.Lock() if sqlite and between is None else None

    @asynccontextmanager
    async def hold(session: AsyncSession) -> AsyncIterator[None]:
        # A connection first, then the lock: the holder of the lock never waits for the pool.
        await session.connection()
        async with writer_turn(session, between) if between else in_process or nullcontext():
            yield

    return hold


def _database_file(url: URL) -> str | None:
    """The path of a SQLite database file; None for an in-memory database or a URI filename."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:") or url.query.get("uri"):
        return None
    return database
