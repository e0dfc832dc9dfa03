"""One request's unit of work: its database session, the policy's row filters, and transactions.

Every read goes through `authorized` and `execute`, so no query runs without the partner's row
filter and the request time bound. A booking, rescheduling or cancellation goes through `write`,
which does not commit: the pipeline's `record` step commits it in one transaction with its access
record, or rolls it back (api/http/pipeline.py). The request's own bookkeeping (the budget charge,
the distinct-patient windows) goes through `transaction` and `commit`, which commit at once, unless
a write is already held: then they join it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import Result, Select
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.database import WriterLock
from api.data.models import Base
from api.errors import ApiError
from api.identity.authentication import Principal
from api.identity.request_identity import RequestIdentity
from authz.engine import Authorizer

__all__ = ["OperationOver", "UnitOfWork"]

logger = logging.getLogger(__name__)


class OperationOver(RuntimeError):
    """Raised to work that the operation left running in the background (see `UnitOfWork.settle`):
    its result reaches no response."""


class UnitOfWork:
    """The session of one request, used by one coroutine at a time.

    Resolvers run concurrently and one AsyncSession must not, hence the lock. A request never
    holds two connections at once: with a pool shared by concurrent requests, that could leave
    every request waiting for a second one.
    """

    def __init__(
        self, session: AsyncSession, authorizer: Authorizer, identity: RequestIdentity, writer_lock: WriterLock
    ) -> None:
        self.session = session
        self.authorizer = authorizer
        self.identity = identity
        self._writer_lock = writer_lock
        self._lock = asyncio.Lock()
        self._held: AsyncExitStack | None = None  # from the first write to the record: the writer lock
        self._after_commit: list[Callable[[], None]] = []
        # What must stand whatever becomes of a held write (`keep`): redone if the write is rolled back.
        self._kept: list[tuple[Callable[[AsyncSession], Awaitable[object]], Callable[[], None] | None]] = []
        self.lost = False  # a rollback discarded held writes: the pipeline must not report them done
        # Set once a refusal quarantined the key: the rest of the request reads no new patient and writes nothing.
        self.halted: ApiError | None = None
        self._settled = False  # the operation is over (`settle`): the session is the pipeline's alone

    @property
    def principal(self) -> Principal:
        return self.identity.principal

    @property
    def request_time(self) -> datetime:
        return self.identity.request_time

    def authorized(self, model: type[Base], action: str = "read") -> Select[Any]:
        """`select(model)` narrowed by the policy to the rows this partner may `action`."""
        return self.authorizer.filter(self.identity.principal.partner_id, action, model)

    async def execute(
        self, statement: Select[*tuple[Any, ...]], parameters: Mapping[str, object] | None = None
    ) -> Result[*tuple[Any, ...]]:
        """Runs a read, with the request time bound for the policy's conditions, and the values of
        the statement's other named parameters."""
        return await self._read(statement, orm=True, parameters=parameters)

    async def rows(
        self, statement: Select[*tuple[Any, ...]], parameters: Mapping[str, object] | None = None
    ) -> Result[*tuple[Any, ...]]:
        """Runs a read of columns only (no entity to load) on the session's connection: the ORM's
        execution and result machinery, built for entities, cost a fifth of a compiled page's read.
        Nothing pending is flushed first: for reads that follow no ORM change in the request."""
        return await self._read(statement, orm=False, parameters=parameters)

    async def _read(
        self, statement: Select[*tuple[Any, ...]], orm: bool, parameters: Mapping[str, object] | None
    ) -> Result[*tuple[Any, ...]]:
        async with self._lock:
            self._check_open()
            try:
                executor = self.session if orm else await self.session.connection()
                result: Result[*tuple[Any, ...]] = await executor.execute(
                    statement, {**(parameters or {}), "request_time": self.identity.request_time}
                )
                return result
            except asyncio.CancelledError:
                # graphql-core cancels the siblings of a failed non-null field: a statement cut in
                # half leaves the session's transaction unusable for the rest of the request.
                try:
                    await self._rollback()
                except Exception:  # the cancellation, not the rollback's failure, must go on
                    logger.warning("rollback after a cancelled statement failed", exc_info=True)
                raise

    async def settle(self) -> None:
        """Ends the operation's use of the session, once the operation has returned or was stopped:
        refuses every read still queued and any later one, and waits for the statement in flight.

        strawberry's DataLoader runs a batch in a task of its own, and cancels it without awaiting it
        when the field waiting for it is cancelled (a failed non-null sibling, the request timeout);
        graphql-core settles a failed field's siblings in the background. A statement cut in such a
        task makes the driver close its connection: before that ends, the connection must go neither
        back to the pool nor to the access record, or it is closed under them. The wait is the
        statement's own time, bounded on PostgreSQL by its statement timeout."""
        self._settled = True  # the reads queued behind the lock are refused as they get it (`_check_open`)
        if not self._lock.locked():
            return
        acquired = asyncio.ensure_future(self._lock.acquire())
        # Given back whenever it is taken, even by a task no longer waiting: a refused read must find it free.
        acquired.add_done_callback(lambda taken: None if taken.cancelled() else self._lock.release())
        try:
            await asyncio.shield(acquired)
        except asyncio.CancelledError:
            await acquired  # cancelled again (a worker stopping): still not before the statement ends
            raise

    def _check_open(self) -> None:
        if self._settled:  # work left behind by the operation: nobody will read its result
            raise OperationOver("the operation is over: its session is closed to resolvers")

    @property
    def holds_write(self) -> bool:
        """A write awaits the pipeline's `record` step, which commits it with its access record."""
        return self._held is not None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """The session for bookkeeping that commits on its own (budget, distinct patients): the callee
        commits through `commit`, which joins a held write instead."""
        async with self._lock:
            self._check_open()
            try:
                # The write joins the request's reads, which changed nothing (on SQLite they hold no
                # transaction at all): committing them first would cost a round trip.
                async with nullcontext() if self._held else self._writer_lock(self.session):
                    yield self.session
            except ApiError:
                raise  # a refusal, after its own commit: rolling back would expire the loaded rows
            except BaseException:  # also a cancellation (see `execute`), which may cut the commit itself
                await self._rollback()
                raise

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """The session for a booking, rescheduling or cancellation, which must not commit: its access
        record commits it (`finish`). SQLite's writer lock stays held until then. Refused once the
        key was quarantined in this request."""
        if self.halted is not None:
            raise self.halted
        async with self._lock:
            self._check_open()
            if self._held is None:
                held = AsyncExitStack()
                await held.enter_async_context(self._writer_lock(self.session))
                self._held = held
            try:
                yield self.session
            except ApiError:
                raise  # refused before it changed anything
            except BaseException:
                await self._rollback()
                raise

    async def commit(self, after: Callable[[], None] | None = None) -> None:
        """Commit the bookkeeping done in `transaction`, then call `after`; with a write held, both
        wait for the write's record (`finish`), so that nothing of a refused write is kept."""
        if self._held is not None:
            if after is not None:
                self._after_commit.append(after)
            return
        await self.session.commit()
        if after is not None:
            after()

    def keep(self, step: Callable[[AsyncSession], Awaitable[object]], after: Callable[[], None] | None = None) -> None:
        """A step already done in the session that must stand whatever becomes of a held write (a
        refusal's quarantine and alerts): if the write is rolled back, the step is done again and
        committed alone, then `after` is called. Without a held write, `commit` kept it already."""
        if self._held is not None:
            self._kept.append((step, after))

    async def finish(self, commit: bool) -> None:
        """Ends a held write: committed with what the caller added to the session (the access record),
        or rolled back, what was kept (`keep`) then committed alone. Raises when the commit fails; the
        write is then undone, and what was kept still committed."""
        held, self._held = self._held, None
        try:
            if commit:
                await self.session.commit()
                self._kept.clear()
            else:
                await self.session.rollback()
                await self._redo_kept()
        except BaseException:
            with contextlib.suppress(Exception):  # the commit's failure is what must go on
                await self.session.rollback()
                await self._redo_kept()
            raise
        finally:
            if held is not None:
                await held.aclose()
        if commit:
            for callback in self._after_commit:
                callback()

    async def _redo_kept(self) -> None:
        kept, self._kept = self._kept, []
        if not kept:
            return
        for step, _ in kept:
            await step(self.session)
        await self.session.commit()
        for _, after in kept:
            if after is not None:
                after()

    async def _rollback(self) -> None:
        if self._held is not None:
            self.lost = True
        await self.session.rollback()
