"""`UnitOfWork.settle`: once the operation is over, no statement of its own is still running on the
request's session, and none starts. Work left in the background (a DataLoader batch strawberry
cancelled without awaiting it, a failed field's siblings graphql-core settles later) must not share
the session with the pipeline's access record, nor hand its connection back to the pool mid-use."""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from sqlalchemy import literal, select

from api.data.database import make_session_factory
from api.services.unit_of_work import OperationOver, UnitOfWork


def unit_of_work(session) -> UnitOfWork:
    identity = SimpleNamespace(request_time=datetime.now(UTC))  # all a read needs of the request
    return UnitOfWork(session, authorizer=None, identity=identity, writer_lock=lambda _session: nullcontext())


class SlowDatabase:
    """The session's statements held back until `release` (a statement the database takes its time
    over): `started` once the first arrives, `finished` once one has run, `ran` those that did run."""

    def __init__(self, session, monkeypatch) -> None:
        self.started, self.release, self.finished = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.ran: list[object] = []
        execute = type(session).execute

        async def slow(session_, statement, *args, **kwargs):
            self.ran.append(statement)
            self.started.set()
            await self.release.wait()
            try:
                return await execute(session_, statement, *args, **kwargs)
            finally:
                self.finished.set()

        monkeypatch.setattr(type(session), "execute", slow)


async def test_settle_waits_for_the_statement_in_flight_then_refuses_any_other(async_engine, monkeypatch):
    async with make_session_factory(async_engine)() as session:
        uow, database = unit_of_work(session), SlowDatabase(session, monkeypatch)
        background = asyncio.create_task(uow.execute(select(literal(1))))  # nobody awaits it, as a batch's task
        await database.started.wait()
        settling = asyncio.create_task(uow.settle())
        await asyncio.sleep(0.05)
        assert not settling.done(), "settled while a statement of the operation was still running"
        database.release.set()
        await settling
        assert database.finished.is_set()
        assert (await background).scalar_one() == 1  # it ran to its end: its connection is sound

        monkeypatch.undo()
        with pytest.raises(OperationOver):
            await uow.execute(select(literal(2)))
        with pytest.raises(OperationOver):
            async with uow.transaction():
                pass
        with pytest.raises(OperationOver):
            async with uow.write():
                pass
        assert (await session.execute(select(literal(3)))).scalar_one() == 3  # the pipeline's session still


async def test_settle_waits_for_a_cancelled_statement_to_clean_up(async_engine, monkeypatch):
    async with make_session_factory(async_engine)() as session:
        uow = unit_of_work(session)
        started, rolled_back = asyncio.Event(), asyncio.Event()
        rollback = UnitOfWork._rollback

        async def never(*_args, **_kwargs):
            started.set()
            await asyncio.Event().wait()

        async def slow_rollback(self) -> None:  # the driver closing the cut statement's connection
            await asyncio.sleep(0.05)
            await rollback(self)
            rolled_back.set()

        monkeypatch.setattr(type(session), "execute", never)
        monkeypatch.setattr(UnitOfWork, "_rollback", slow_rollback)
        background = asyncio.create_task(uow.execute(select(literal(1))))
        await started.wait()
        background.cancel()  # as strawberry cancels a batch whose fields were all cancelled, without awaiting it
        await uow.settle()
        assert rolled_back.is_set(), "settled before the cut statement's clean-up ended"
        assert background.cancelled()


async def test_settle_refuses_the_reads_still_queued_instead_of_running_them(async_engine, monkeypatch):
    async with make_session_factory(async_engine)() as session:
        uow, database = unit_of_work(session), SlowDatabase(session, monkeypatch)
        in_flight = asyncio.create_task(uow.execute(select(literal(1))))
        await database.started.wait()
        queued = [asyncio.create_task(uow.execute(select(literal(2)))) for _ in range(3)]
        await asyncio.sleep(0)  # the three wait for the session
        settling = asyncio.create_task(uow.settle())
        await asyncio.sleep(0.05)
        database.release.set()
        await settling
        assert (await in_flight).scalar_one() == 1
        for task in queued:
            with pytest.raises(OperationOver):
                await task
        assert len(database.ran) == 1, "a read queued behind the statement in flight ran after the operation was over"


async def test_settle_cancelled_again_still_waits_for_the_statement_in_flight(async_engine, monkeypatch):
    async with make_session_factory(async_engine)() as session:
        uow, database = unit_of_work(session), SlowDatabase(session, monkeypatch)
        in_flight = asyncio.create_task(uow.execute(select(literal(1))))
        await database.started.wait()
        settling = asyncio.create_task(uow.settle())
        await asyncio.sleep(0.01)
        settling.cancel()  # a worker stopping cancels the request again
        await asyncio.sleep(0.05)
        assert not settling.done(), "a second cancellation let the session be closed under the statement"
        database.release.set()
        with pytest.raises(asyncio.CancelledError):
            await settling
        assert database.finished.is_set() and (await in_flight).scalar_one() == 1
        with pytest.raises(OperationOver):  # and the session is closed to the operation's work
            await uow.execute(select(literal(2)))
