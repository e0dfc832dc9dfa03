"""The writers of every worker process on one SQLite file, one at a time, woken in turn by the kernel.

SQLite lets one writer in at a time; a writer that finds the file locked sleeps in its busy handler
and tries again (after 1, 2, 5, 10 ms... up to busy_timeout), whether the lock was freed after 0.1
ms or not. With two workers each committing twice a page, they spent their time asleep: two workers
served fewer pages than one. Here a writer waits on an advisory lock of a file beside the database
(flock: exclusive, released by the kernel if the process dies) and is woken as soon as it is free.
Writers that do not take it (the CLI, migrations) still meet SQLite's own lock and busy handler.

Libraries for file locks (filelock, portalocker) wait by polling, the very sleep this avoids; a
blocking flock on a thread is the whole mechanism.

    lock = ProcessLock(Path("app.db-writer"))
    async with lock:  # the caller's write transaction, committed inside
        ...
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from types import TracebackType

__all__ = ["ProcessLock"]


class ProcessLock:
    """Exclusive between processes, not between the tasks of one process: its callers hold an
    asyncio lock around it (api/data/database.py `sqlite_writer_lock`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid: int | None = None  # a forked worker opens the file anew: a shared descriptor shares its lock

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        return self._fd

    async def __aenter__(self) -> None:
        fd = self._file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no thread
            return
        except BlockingIOError:
            pass
        waiting = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:  # the thread still takes the lock: give it back once it has
            waiting.add_done_callback(lambda taken: None if taken.exception() else fcntl.flock(fd, fcntl.LOCK_UN))
            raise

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)
