"""SQLite's writers across worker processes (api/data/process_lock.py): one at a time, the next
woken when the holder lets go, and a waiter that gives up leaves the lock free."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from api.data.database import make_async_engine, make_session_factory, sqlite_writer_lock
from api.data.process_lock import ProcessLock

# Another worker: takes the lock, says so, lets go when told.
HOLDER = """
import asyncio, sys
from pathlib import Path
from api.data.process_lock import ProcessLock

async def main():
    async with ProcessLock(Path(sys.argv[1])):
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
        async with ProcessLock(path):
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
    lock = ProcessLock(path)

    async def write() -> None:
        async with lock:
            raise AssertionError("entered while another process held the lock")

    waiter = asyncio.create_task(write())
    await asyncio.sleep(0.3)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
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
