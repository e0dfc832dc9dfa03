"""The writers of every worker process on one SQLite file, one at a time, woken in turn by the kernel.

SQLite lets one writer in at a time; a writer that finds the file locked sleeps in its busy handler
and tries again (after 1, 2, 5, 10 ms... up to busy_timeout), whether the lock was freed after 0.1
ms or not. With two workers each committing twice a page, they spent their time asleep. Here a
writer waits on an advisory lock of a file beside the database (flock: exclusive, released by the
kernel when its descriptor is closed or its process dies) and is woken as soon as it is free; it
gives up after the busy timeout, as SQLite would, with SQLite's "database is locked". Writers that
do not take it (the CLI, migrations) still meet SQLite's own lock and busy handler, which is what
keeps the data safe: this lock only orders the workers.

Libraries for file locks (filelock, portalocker) wait by polling, the very sleep this avoids; a
blocking flock on a thread is the whole mechanism.

    lock = ProcessLock(Path("app.db-writer"), wait_seconds=5)
    async with lock:  # the caller's write transaction, committed inside
        ...
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
from pathlib import Path
from types import TracebackType

from sqlalchemy.exc import OperationalError

__all__ = ["ProcessLock"]

logger = logging.getLogger(__name__)


class ProcessLock:
    """Exclusive between processes, not between the tasks of one process: its callers hold an
    asyncio lock around it (api/data/database.py `sqlite_writer_lock`), so one turn at a time."""

    def __init__(self, path: Path, wait_seconds: float) -> None:
        self.path, self.wait_seconds = path, wait_seconds
        self._held: int | None = None  # the descriptor of the turn in progress
        self._unavailable_told = False

    async def __aenter__(self) -> None:
        fd = self._open()
        if fd is None:
            return  # no lock file: SQLite's own lock still keeps the writers apart
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no thread
        except BlockingIOError:
            await self._wait(fd)
        except BaseException:
            os.close(fd)
            raise
        self._held = fd

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        fd, self._held = self._held, None
        if fd is not None:
            os.close(fd)  # lets go of the lock

    def _open(self) -> int | None:
        """A descriptor of its own for each turn (each open is its own lock): a turn given up while a
        thread still waits closes its own descriptor, never the next turn's; and nothing is shared
        with a forked child."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            if not self._unavailable_told:
                self._unavailable_told = True
                logger.warning("cannot open %s: SQLite's writers will poll for their turn", self.path, exc_info=True)
            return None

    async def _wait(self, fd: int) -> None:
        """On a thread, as long as the busy timeout; closes `fd` when it gives up (cancelled or too long),
        once the thread is done with it, which lets go of the lock if the thread took it meanwhile."""
        waiting = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.wait_for(asyncio.shield(waiting), self.wait_seconds)
        except BaseException as stopped:
            waiting.add_done_callback(lambda _: os.close(fd))
            if isinstance(stopped, TimeoutError):
                raise _locked(self.wait_seconds) from None
            raise


def _locked(seconds: float) -> OperationalError:
    """SQLite's own refusal past its busy timeout, so that callers tell the client the same
    (api/data/failures.py: the database is unavailable)."""
    busy = sqlite3.OperationalError(f"database is locked: another worker kept writing for {seconds:g} s")
    busy.sqlite_errorcode, busy.sqlite_errorname = sqlite3.SQLITE_BUSY, "SQLITE_BUSY"
    return OperationalError("waiting for the writers' lock", None, busy)
