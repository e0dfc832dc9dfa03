"""The writers of every worker process on one SQLite file, one at a time, each turn taken and given
back by the thread that runs its statements.

SQLite lets one writer in at a time; a writer that finds the file locked sleeps in its busy handler
and tries again (after 1, 2, 5, 10 ms... up to busy_timeout), whether the lock was freed after 0.1
ms or not. With two workers each committing twice a page, they spent their time asleep. Here the
workers' writers take turns on an advisory lock of a file beside the database (flock: exclusive per
open descriptor, released by the kernel when it is closed or its process dies), and SQLite's own
lock finds the file free.

A turn is taken on the driver's thread just before its transaction's first statement, and given back
there just after the commit or rollback (api/data/sqlite_driver.py): it lasts as long as SQLite's
work. Taken and given back by the request's coroutine, it lasted until the event loop came back to
that request, after whatever other requests' work was ready to run: 6 ms a turn on the benchmark for
well under one of SQLite's, a turn's wait 36 ms, and two workers served 1.5 times what one did. The
wait polls (50 µs, doubling up to 1 ms): a blocking flock on a thread cannot be given up, neither
at the busy timeout nor when the request is gone, and a turn is now about that long.

Writers that do not take it (the CLI, migrations) still meet SQLite's own lock and busy handler,
which is what keeps the data safe: this lock only orders the workers.

    lock = ProcessLock(Path("app.db-writer"), wait_seconds=5)
    turn = lock.turn()  # one write transaction's
    turn.take(stop)  # on the driver's thread, before its first statement; raises "database is locked" past
                     # 5 s, or once the turn ends or `stop` (a threading.Event) is set
    turn.give_back()  # after its commit or rollback (taken again if the transaction goes on)
    turn.end()  # the transaction's scope is left: given back, and a wait under way gives up
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["ProcessLock", "WriterTurn"]

logger = logging.getLogger(__name__)

FIRST_PAUSE, LONGEST_PAUSE = 0.00005, 0.001  # seconds between two tries of a waiting writer


class ProcessLock:
    """The lock's file and how long a writer waits for it: SQLite's busy timeout."""

    def __init__(self, path: Path, wait_seconds: float) -> None:
        self.path, self.wait_seconds = path, wait_seconds
        self._unavailable_told = False

    def turn(self) -> WriterTurn:
        """One write transaction's turn, not taken yet."""
        return WriterTurn(self)

    def open(self) -> int | None:
        """A descriptor of its own for each turn (each open is its own lock): a turn given up never
        closes the next one's, and nothing is shared with a forked child. None without a lock file
        (SQLite's own lock still keeps the writers apart)."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            if not self._unavailable_told:
                self._unavailable_told = True
                logger.warning("cannot open %s: SQLite's writers will poll for their turn", self.path, exc_info=True)
            return None


class WriterTurn:
    """One write transaction's hold of the lock (see the module's docstring). `take` and `give_back`
    run on the driver's thread, `end` on the event loop's: the descriptor changes hands under a mutex."""

    def __init__(self, lock: ProcessLock) -> None:
        self._lock = lock
        self._fd: int | None = None  # while taken
        self._ended = False
        self._mutex = threading.Lock()

    def take(self, stop: threading.Event | None = None) -> None:
        """Waits for the lock, at most the busy timeout, and gives up once the turn ends or `stop` is
        set (the trip's caller stopped waiting for it); no-op when already taken."""
        if self._fd is not None:
            return
        fd = self._lock.open()
        if fd is None:
            return
        deadline, pause = time.monotonic() + self._lock.wait_seconds, FIRST_PAUSE
        try:
            while not self._try(fd):
                if self._ended or (stop is not None and stop.is_set()):
                    raise _locked("its request stopped waiting")
                if time.monotonic() >= deadline:
                    raise _locked(f"another worker kept writing for {self._lock.wait_seconds:g} s")
                time.sleep(pause)
                pause = min(2 * pause, LONGEST_PAUSE)
            with self._mutex:
                if self._ended:  # ended as the lock came: not kept past the end
                    raise _locked("its request stopped waiting")
                self._fd, fd = fd, None
        finally:
            if fd is not None:
                os.close(fd)

    def give_back(self) -> None:
        with self._mutex:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # lets go of the lock

    def end(self) -> None:
        with self._mutex:
            self._ended = True
        self.give_back()

    @staticmethod
    def _try(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def _locked(why: str) -> sqlite3.OperationalError:
    """SQLite's own refusal past its busy timeout, raised by the driver as SQLite's would be, so that
    callers tell the client the same (api/data/failures.py: the database is unavailable)."""
    busy = sqlite3.OperationalError(f"database is locked: {why}")
    busy.sqlite_errorcode, busy.sqlite_errorname = sqlite3.SQLITE_BUSY, "SQLITE_BUSY"
    return busy
