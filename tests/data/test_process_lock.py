"""SQLite's writers across worker processes (api/data/process_lock.py): one turn at a time, taken on
the driver's thread when the next holder lets go, given back by the commit's or rollback's own trip
(before the request's coroutine runs again); a waiter that gives up (its request gone, or past the
busy timeout with SQLite's own refusal) never takes the lock, nor the next turn's."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.database import _database_file, make_async_engine, make_session_factory, sqlite_writer_lock
from api.data.failures import is_database_unavailable
from api.data.process_lock import ProcessLock, WriterTurn
from api.data.sqlite_driver import DEFERRED, LAST_OF_TRANSACTION

# Another worker holding the lock: says so, lets go when told.
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


def _holder(path: Path) -> subprocess.Popen[bytes]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    return holder


def _release(holder: subprocess.Popen[bytes]) -> None:
    assert holder.stdin is not None
    holder.stdin.write(b"go\n")
    holder.stdin.flush()
    assert holder.wait(10) == 0


def _free(path: Path) -> bool:
    if not path.exists():
        return True  # no turn taken yet
    probe = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(probe, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(probe)


async def _on_a_thread(function):  # type: ignore[no-untyped-def]
    return await asyncio.get_running_loop().run_in_executor(None, function)


async def test_a_turn_waits_for_another_process_and_takes_the_lock_once_it_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "app.db-writer"
    holder = _holder(path)
    turn = ProcessLock(path, 30).turn()
    taking = asyncio.ensure_future(_on_a_thread(turn.take))
    await asyncio.sleep(0.3)
    assert not taking.done()  # held by the other process
    _release(holder)
    await asyncio.wait_for(taking, 10)
    assert not _free(path)
    turn.give_back()
    assert _free(path)


async def test_a_turn_waits_no_longer_than_sqlite_would_and_is_told_the_database_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "app.db-writer"
    holder = _holder(path)
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as refused:
            await _on_a_thread(ProcessLock(path, 0.3).turn().take)
        assert time.monotonic() - started < 5
        assert is_database_unavailable(refused.value)  # a 503, as SQLite's "database is locked"
    finally:
        _release(holder)
    turn = ProcessLock(path, 0.3).turn()
    await _on_a_thread(turn.take)  # and the process writes once the other lets go
    assert not _free(path)
    turn.end()
    assert _free(path)


async def test_a_turn_ended_while_waiting_gives_up_and_never_takes_the_next_turns_lock(tmp_path: Path) -> None:
    """Its request is gone: the wait stops at once, and the lock, once free, is the next turn's."""
    path = tmp_path / "app.db-writer"
    holder = _holder(path)
    lock = ProcessLock(path, 30)
    gone = lock.turn()
    waiting = asyncio.ensure_future(_on_a_thread(gone.take))
    await asyncio.sleep(0.2)
    gone.end()
    with pytest.raises(Exception) as stopped:
        await asyncio.wait_for(waiting, 5)
    assert is_database_unavailable(stopped.value)
    _release(holder)
    assert _free(path)
    following = lock.turn()
    await _on_a_thread(following.take)
    for _ in range(10):
        assert not _free(path)  # the ended turn let go of nothing of it
        await asyncio.sleep(0.02)
    gone.give_back()
    assert not _free(path)
    following.give_back()
    assert _free(path)


async def _inserted(session: AsyncSession, value: int, **options: object) -> None:
    await session.execute(text("INSERT INTO t VALUES (:n)"), {"n": value}, execution_options=options)


async def test_the_commit_gives_the_turn_back_on_the_drivers_thread(tmp_path: Path) -> None:
    """A write transaction holds the lock from its first statement to its commit or rollback, and no
    longer: given back within that trip, before the coroutine of the request goes on."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    path = Path(f"{tmp_path / 'app.db'}-writer")
    engine = make_async_engine(url)
    writer_lock = sqlite_writer_lock(engine)
    try:
        async with make_session_factory(engine)() as session:
            await session.execute(text("CREATE TABLE t (n INTEGER)"))
            await session.commit()
            async with writer_lock(session):
                assert _free(path)  # nothing sent yet
                await _inserted(session, 1)
                assert not _free(path)
                await _inserted(session, 2, **LAST_OF_TRANSACTION)  # commits in its trip
                assert _free(path)
                await _inserted(session, 3)  # the transaction goes on: taken again
                assert not _free(path)
                await session.rollback()  # the connection goes back to the pool
                assert _free(path)
                await _inserted(session, 4)  # on the connection the session takes next: the scope's turn
                assert not _free(path)
                await session.commit()
                assert _free(path)
                await _inserted(session, 5)
            assert _free(path)  # leaving gives it back, whatever is left (rolled back by the session)
            await session.rollback()
            assert (await session.execute(text("SELECT n FROM t ORDER BY n"))).scalars().all() == [1, 2, 4]
    finally:
        await engine.dispose()


async def test_a_request_cancelled_while_its_trip_waits_for_the_turn_stops_at_once_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """Its trip gives up on the driver's thread as soon as the request stops waiting, not at the busy
    timeout, and never runs once the lock comes: the ledger's one trip (a record sent with the
    refund, which commits) would otherwise commit what the client was told failed."""
    engine = make_async_engine(f"sqlite:///{tmp_path / 'app.db'}", statement_timeout_seconds=30)
    path = Path(f"{tmp_path / 'app.db'}-writer")
    sessions, writer_lock = make_session_factory(engine), sqlite_writer_lock(engine, 30)
    try:
        async with sessions() as session:
            await session.execute(text("CREATE TABLE t (n INTEGER)"))
            await session.commit()
        holder = _holder(path)

        async def request() -> None:
            async with sessions() as session, writer_lock(session):
                await _inserted(session, 1, **DEFERRED)
                await _inserted(session, 2, **LAST_OF_TRANSACTION)

        waiting = asyncio.create_task(request())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # its trip waits for the other process
        waiting.cancel()
        started = time.monotonic()
        await asyncio.gather(waiting, return_exceptions=True)
        assert time.monotonic() - started < 5 and waiting.cancelled()
        _release(holder)
        await asyncio.sleep(0.2)
        assert _free(path)
        async with sessions() as session:
            assert (await session.execute(text("SELECT n FROM t"))).all() == []
    finally:
        await engine.dispose()


async def test_a_turn_ended_as_the_lock_comes_lets_go_of_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "app.db-writer"
    turn = ProcessLock(path, 30).turn()
    took = WriterTurn._try

    def ended_meanwhile(fd: int) -> bool:
        turn.end()  # on the event loop's side, between the flock and the hand-over
        return took(fd)

    monkeypatch.setattr(WriterTurn, "_try", staticmethod(ended_meanwhile))
    with pytest.raises(sqlite3.OperationalError):
        await _on_a_thread(turn.take)
    assert _free(path)


async def test_a_connection_back_in_the_pool_leaves_the_turn_behind(tmp_path: Path) -> None:
    """A session that commits within its turn gives its connection back to the pool: another session
    taking it there writes without that turn (and SQLite's own lock keeps them apart)."""
    engine = make_async_engine(f"sqlite:///{tmp_path / 'app.db'}")
    path = Path(f"{tmp_path / 'app.db'}-writer")
    sessions, writer_lock = make_session_factory(engine), sqlite_writer_lock(engine)
    try:
        async with sessions() as first, sessions() as second:
            await first.execute(text("CREATE TABLE t (n INTEGER)"))
            await first.commit()
            async with writer_lock(first):
                await _inserted(first, 1)
                await first.commit()  # the connection goes back to the pool
                await _inserted(second, 2)  # on that connection
                assert _free(path)
                await second.commit()
    finally:
        await engine.dispose()


async def test_two_engines_on_one_file_take_turns(tmp_path: Path) -> None:
    """Two workers' engines (here in one process: each turn opens the lock's file on its own, as a
    process would): the second writer waits for the first's commit."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engines = [make_async_engine(url), make_async_engine(url)]
    try:
        first, second = (make_session_factory(e)() for e in engines)
        first_lock, second_lock = (sqlite_writer_lock(e) for e in engines)
        async with first, second:
            await first.execute(text("CREATE TABLE t (n INTEGER)"))
            await first.commit()
            order: list[str] = []

            async def later() -> None:
                async with second_lock(second):
                    await _inserted(second, 2)
                    order.append("second")
                    await second.commit()

            async with first_lock(first):
                await _inserted(first, 1)
                waiting = asyncio.create_task(later())
                await asyncio.sleep(0.3)
                order.append("first")
                await first.commit()
            await asyncio.wait_for(waiting, 10)
            assert order == ["first", "second"]
            assert (await second.execute(text("SELECT count(*) FROM t"))).scalar_one() == 2
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_database_in_memory_queues_its_writers_in_the_event_loop() -> None:
    engine = make_async_engine("sqlite://")
    writer_lock = sqlite_writer_lock(engine)
    try:
        first, second = (make_session_factory(engine)() for _ in range(2))
        async with first, second:
            inside = asyncio.Event()

            async def later() -> None:
                async with writer_lock(second):
                    inside.set()

            async with writer_lock(first):
                waiting = asyncio.create_task(later())
                await asyncio.sleep(0.1)
                assert not inside.is_set()
            await asyncio.wait_for(waiting, 5)
    finally:
        await engine.dispose()


async def test_without_a_lock_file_writers_go_on_under_sqlites_own_lock(tmp_path: Path) -> None:
    turn = ProcessLock(tmp_path / "missing" / "app.db-writer", 1).turn()
    await _on_a_thread(turn.take)
    turn.end()


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite:////srv/app.db", "/srv/app.db"),
        ("sqlite:///app.db", "app.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///file:/srv/app.db?uri=true", None),
    ],
)
def test_the_lock_file_is_beside_a_database_file_only(url: str, file: str | None) -> None:
    assert _database_file(make_url(url)) == file
