"""SQLite's writers across worker processes (api/data/process_lock.py): one at a time, the next
woken when the holder lets go; a waiter that gives up (cancelled, or past the busy timeout with
SQLite's own refusal) leaves the lock free and never takes it from the next turn."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from api.data.database import _database_file, make_async_engine, make_session_factory, sqlite_writer_lock
from api.data.failures import is_database_unavailable
from api.data.process_lock import ProcessLock

# Another worker: takes the lock, says so, lets go when told.
HOLDER = """
import asyncio, sys
from pathlib import Path
from api.data.process_lock import ProcessLock

async def main():
    async with ProcessLock(Path(sys.argv[1]), 30):
        print("held", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
"""


def _holder(path: Path) -> subprocess.Popen[bytes]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=Path.cwd()
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    return holder


def _release(holder: subprocess.Popen[bytes]) -> None:
    assert holder.stdin is not None
    holder.stdin.write(b"go\n")
    holder.stdin.flush()
    assert holder.wait(10) == 0


async def _give_up_waiting(lock: ProcessLock) -> None:
    """A writer waits for the lock another process holds, and is cancelled (its request timed out)."""

    async def write() -> None:
        async with lock:
            raise AssertionError("entered while another process held the lock")

    waiter = asyncio.create_task(write())
    await asyncio.sleep(0.3)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)


def _free(path: Path) -> bool:
    probe = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(probe, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(probe)


async def test_a_writer_waits_for_another_process_and_enters_once_it_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "app.db-writer"
    holder = _holder(path)
    entered = asyncio.Event()

    async def write() -> None:
        async with ProcessLock(path, 30):
            entered.set()

    writer = asyncio.create_task(write())
    await asyncio.sleep(0.3)
    assert not entered.is_set()  # held by the other process
    _release(holder)
    await asyncio.wait_for(writer, 10)
    assert entered.is_set() and _free(path)  # and given back on leaving


async def test_a_waiter_cancelled_leaves_the_lock_free(tmp_path: Path) -> None:
    path = tmp_path / "app.db-writer"
    holder = _holder(path)
    lock = ProcessLock(path, 30)
    await _give_up_waiting(lock)
    _release(holder)  # the cancelled waiter's thread now takes the lock, and gives it straight back
    for _ in range(200):
        if _free(path):
            break
        await asyncio.sleep(0.05)
    assert _free(path)
    async with lock:  # and the process can still write
        assert not _free(path)


async def test_two_engines_on_one_file_take_turns(tmp_path: Path) -> None:
    """Two workers' engines (here in one process: each opens the lock's file on its own, as a
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
                    order.append("second")
                    await second.execute(text("INSERT INTO t VALUES (2)"))
                    await second.commit()

            async with first_lock(first):
                await first.execute(text("INSERT INTO t VALUES (1)"))
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


async def test_a_turn_given_up_never_lets_go_of_the_next_one(tmp_path: Path) -> None:
    """The first waiter is cancelled; its thread takes the lock once the other process lets go, and
    must give it back without touching the turn that comes next."""
    path = tmp_path / "app.db-writer"
    holder = _holder(path)
    lock = ProcessLock(path, 30)
    await _give_up_waiting(lock)
    inside, leave = asyncio.Event(), asyncio.Event()

    async def next_turn() -> None:
        async with lock:
            inside.set()
            await leave.wait()

    second = asyncio.create_task(next_turn())
    _release(holder)
    await asyncio.wait_for(inside.wait(), 10)
    for _ in range(20):  # the cancelled turn's thread has long finished: the lock is still the second's
        assert not _free(path)
        await asyncio.sleep(0.02)
    leave.set()
    await asyncio.wait_for(second, 10)
    assert _free(path)


async def test_a_writer_waits_no_longer_than_sqlite_would_and_is_told_the_database_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "app.db-writer"
    holder = _holder(path)
    try:
        with pytest.raises(Exception) as refused:
            async with ProcessLock(path, 0.3):
                raise AssertionError("entered while another process held the lock")
        assert is_database_unavailable(refused.value)  # a 503, as SQLite's "database is locked"
    finally:
        _release(holder)
    async with ProcessLock(path, 0.3):  # and the process writes once the other lets go
        assert not _free(path)


async def test_without_a_lock_file_writers_go_on_under_sqlites_own_lock(tmp_path: Path) -> None:
    async with ProcessLock(tmp_path / "missing" / "app.db-writer", 1):
        pass


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
