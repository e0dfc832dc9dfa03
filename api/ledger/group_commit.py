"""Group commit of the access ledger: concurrent requests' records written by one transaction.

Each request's response waits for the commit of its own record (fail closed), and a commit is the
slowest part of writing it: one per request makes N commits of N concurrent requests, and on SQLite
N turns of its single writer. Here a request finding the committer idle writes its record at once,
itself (no added latency when alone); those arriving while that commit is in flight queue, and are
written together by the next transaction, by a task that goes on while any are queued
(leader/follower group commit, at most `max_batch` at a time). Each request still gets its own answer:
returned once the transaction holding its record is committed, or the error that made it fail.

A failed batch keeps nothing. Its requests are then tried again one by one, each in a transaction
of its own, so that a record the database refuses fails its own request only, not the others queued
with it; unless the database is away or too slow, when every one of them fails at once (no poison to
single out, and no reason to wait for it once per request).

No library does this for an asyncio SQLAlchemy session: a queue and a task are all it takes.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.clock import Clock, system_clock
from api.data.database import WriterLock
from api.data.failures import is_database_unavailable, is_statement_timeout
from api.identity.authentication import Principal
from api.ledger import access
from api.ledger.access import AccessEntry, Disclosures
from api.protection.budgets import Budgets

__all__ = ["GroupCommit", "LedgerWork"]

logger = logging.getLogger("api")

MAX_BATCH = 64  # requests per transaction: bounds how long the batch holds its rows, and SQLite's writer


@dataclass(frozen=True)
class LedgerWork:
    """What one request leaves in the database after its response is built: its access record, what it
    disclosed (None when it disclosed nothing), and the points it was charged but did not spend."""

    entry: AccessEntry
    disclosures: Disclosures | None = None
    principal: Principal | None = None
    refund: int = 0


_Waiting = tuple[LedgerWork, "asyncio.Future[None]"]


class GroupCommit:
    """The worker's ledger writer: `await ledger.commit(work)` returns once `work` is committed.

    Example:
        ledger = GroupCommit(sessions, writer_lock, budgets)
        await ledger.commit(LedgerWork(entry, disclosures, principal, refund=12))  # raises when not recorded
        await ledger.drain()  # on shutdown: what is queued is written first
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer_lock: WriterLock,
        budgets: Budgets,
        clock: Clock = system_clock,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.sessions, self.writer_lock, self.budgets, self.clock = sessions, writer_lock, budgets, clock
        self.max_batch = max_batch
        self._queue: deque[_Waiting] = deque()
        self._leader: asyncio.Future[None] | None = None  # a request writing its own record at once, till done
        self._committer: asyncio.Task[None] | None = None  # writing the queue, batch after batch, until empty

    async def commit(self, work: LedgerWork) -> None:
        """Queues `work` and waits for the commit of its transaction; raises what made that fail."""
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()
        self._queue.append((work, committed))
        if self._leader is None and self._committer is None:  # idle: this request writes its record at once
            self._leader = loop.create_future()
            try:
                await self._commit_batch([self._queue.popleft()])  # its own: nothing else was queued
            finally:
                self._leader.set_result(None)
                self._leader = None
                self._follow()
        await committed

    def _follow(self) -> None:
        """The records queued while the leader's commit was in flight: written by the committer, batch
        after batch, in a context of its own (the batches are no request's: log lines, trace spans)."""
        if self._queue and self._committer is None:
            loop = asyncio.get_running_loop()
            self._committer = loop.create_task(self._commit_queued(), context=contextvars.Context())

    async def drain(self) -> None:
        """Waits until everything queued is committed (or has failed): a stopping worker loses nothing."""
        while (writing := self._leader or self._committer) is not None:
            await asyncio.shield(writing)

    async def write(self, session: AsyncSession, works: list[LedgerWork], ends_transaction: bool = False) -> None:
        """The records, their disclosures and their refunds, in the caller's transaction (ended by
        the last refund when `ends_transaction`: the caller's commit then has nothing left to do)."""
        await access.write_many(session, [(work.entry, work.disclosures) for work in works])
        # Last, so that the budget rows stay locked only until the commit; a partner's refunds summed
        # into one statement, the partners in one order so that two workers' batches cannot deadlock.
        now = self.clock().timestamp()
        refunds = self._refunds(works)
        for index, (principal, points) in enumerate(refunds, 1):
            await self.budgets.refund(session, principal, points, now, last=ends_transaction and index == len(refunds))

    async def _commit_queued(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
                await self._commit_batch(batch)
        finally:
            self._committer = None
            for _, committed in self._queue:  # only when cancelled: nothing else leaves the loop early
                _settle(committed, RuntimeError("the ledger's committer was stopped"))
            self._queue.clear()

    async def _commit_batch(self, batch: list[_Waiting]) -> None:
        try:
            async with self.sessions() as session, self.writer_lock(session):
                await self.write(session, [work for work, _ in batch], ends_transaction=True)
                await session.commit()
        except asyncio.CancelledError:  # the worker's loop is closing: the batch is rolled back, and said so
            for _, committed in batch:
                _settle(committed, RuntimeError("the ledger's committer was stopped"))
            raise
        except Exception as error:  # the session's exit rolled the whole batch back
            if len(batch) > 1 and not _not_the_rows(error):
                logger.warning("a batch of %d ledger records failed; each is tried alone", len(batch), exc_info=True)
                for waiting in batch:
                    await self._commit_batch([waiting])
                return
            for _, committed in batch:
                _settle(committed, error)
            return
        for _, committed in batch:
            _settle(committed, None)

    def _refunds(self, works: list[LedgerWork]) -> list[tuple[Principal, int]]:
        summed: dict[tuple[int, int, float], tuple[Principal, int]] = {}
        for work in works:
            if work.principal is not None and work.refund:
                # per bucket: a partner's, with its limits (a request reads them with its key)
                bucket = (work.principal.partner_id, *self.budgets.limits(work.principal))
                principal, points = summed.get(bucket, (work.principal, 0))
                summed[bucket] = (principal, points + work.refund)
        return [summed[bucket] for bucket in sorted(summed)]


def _not_the_rows(error: Exception) -> bool:
    """The database is away or too slow (SQLite locked past its busy timeout, a statement stopped by its
    timeout): trying each record alone would only make every request wait for it again."""
    return is_database_unavailable(error) or is_statement_timeout(error)


def _settle(committed: asyncio.Future[None], error: BaseException | None) -> None:
    """The request's answer; a request cancelled meanwhile (its client gone, the worker stopping) has
    stopped waiting for it, but its record was written all the same."""
    if committed.done():
        return
    if error is None:
        committed.set_result(None)
    else:
        committed.set_exception(error)
