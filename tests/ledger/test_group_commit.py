"""Group commit of the access ledger (api/ledger/group_commit.py): the records of requests arriving
while a commit is in flight are written by one transaction, each response still waits for the commit
of its own record, a failed batch keeps nothing and fails its requests closed, a record the database
refuses fails its own request only, and a stopping worker commits what is queued."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from api.data.database import make_session_factory, sqlite_writer_lock
from api.data.models import AccessRecord, Appointment, Disclosure, PartnerBudget
from api.http import logs
from api.ledger import access as ledger_access
from api.ledger.access import AccessEntry, Disclosures
from api.ledger.group_commit import GroupCommit, LedgerWork
from api.operators import accounts as operators
from api.protection.budgets import Budgets
from api.protection.fair_turns import FairTurns
from api.settings import Settings
from tests.client import walk
from tests.ledger.rows import by_public_id, disclosed
from tests.ledger.test_access_ledger import PAGE
from tests.protection.test_refund_survives_the_ledger import budget_left
from tests.world import window_args

POISON = "Poison"  # the operation name whose record the database refuses (see `poisoned`)


def entry(operation_name: str = "Day") -> AccessEntry:
    return AccessEntry(
        request_id=uuid.uuid4().hex,
        at=datetime.now(UTC),
        partner_id=None,
        key_id=None,
        key_prefix=None,
        operation_name=operation_name,
        query="{ viewer { name } }",
        outcome="served",
        error_code=None,
        http_status=200,
        requested_cost=None,
        actual_cost=None,
        duration_ms=1.0,
        client_address=None,
    )


@contextmanager
def ledger_commits(engine: AsyncEngine) -> Iterator[list[int]]:
    """The commits of transactions that wrote access records, each with the number it wrote."""
    commits: list[int] = []
    written: dict[int, list[object]] = {}  # connection -> the executions of its transaction inserting records

    def on_insert(connection, _cursor, statement, _parameters, context, _executemany) -> None:
        # alone, with its disclosures (PostgreSQL), or many (one execution, perhaps in several statements)
        if "INSERT INTO access_records" in statement and context not in written.setdefault(id(connection), []):
            written[id(connection)].append(context)

    tried: list[tuple[int, int]] = []  # the commits, each the connection's and its records' number
    failed: set[int] = set()  # the commits that failed: on SQLite the records are sent with it (DEFERRED)

    def on_commit(connection) -> None:
        if written.get(id(connection)):
            records = sum(len(context.compiled_parameters) for context in written.pop(id(connection)))
            tried.append((id(connection), records))

    def on_error(context) -> None:
        if context.statement is None and tried and tried[-1][0] == id(context.connection):  # the commit's
            failed.add(len(tried) - 1)

    def on_rollback(connection) -> None:
        written.pop(id(connection), None)

    target = engine.sync_engine
    listeners = [
        ("before_cursor_execute", on_insert),
        ("commit", on_commit),
        ("handle_error", on_error),
        ("rollback", on_rollback),
    ]
    for name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield commits
    finally:
        for name, listener in listeners:
            event.remove(target, name, listener)
        commits.extend(records for index, (_, records) in enumerate(tried) if index not in failed)


def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database refuses the record of an operation named POISON (a NOT NULL column left empty)."""
    storable = ledger_access._storable

    def refused_when_poison(entry: AccessEntry) -> dict[str, object]:
        values = storable(entry)
        if entry.operation_name == POISON:
            values["outcome"] = None
        return values

    monkeypatch.setattr("api.ledger.access._storable", refused_when_poison)


def fails_after_writing(write):
    """`write`, and then a failure (a full disk at the commit): its rows were written, and must not be kept."""

    async def failing(*args, **kwargs):
        await write(*args, **kwargs)
        raise RuntimeError("disk full")

    return failing


def recorded(sync_engine) -> dict[str, AccessRecord]:
    with Session(sync_engine) as session:
        return {record.request_id: record for record in session.scalars(select(AccessRecord))}


@pytest.fixture
def committer(async_engine) -> GroupCommit:
    settings = Settings(database_url=str(async_engine.url))
    return GroupCommit(make_session_factory(async_engine), sqlite_writer_lock(async_engine), Budgets(settings))


async def test_records_queued_while_the_committer_is_busy_share_one_transaction(committer, async_engine, sync_engine):
    works = [LedgerWork(entry()) for _ in range(20)]
    with ledger_commits(async_engine) as commits:
        await asyncio.gather(*(committer.commit(work) for work in works))
    # the first written at once by its own request; the 19 queued during its commit, in one transaction
    assert commits == [1, 19]
    assert set(recorded(sync_engine)) == {work.entry.request_id for work in works}


async def test_a_batch_writes_each_record_with_its_own_disclosures(committer, async_engine, sync_engine, world):
    with Session(sync_engine) as session:
        appointments = session.execute(
            select(Appointment.id, Appointment.practice_id, Appointment.patient_id).order_by(Appointment.id).limit(10)
        ).all()
    works = []
    for i in range(10):
        shown = Disclosures()
        for appointment, practice, patient in appointments[: i + 1]:  # the i-th request showed i + 1 appointments
            shown.add(shown.appointments, appointment, practice, i + 1)
            if i % 2:  # and, every other request, their patients: rows naming an appointment and its patient
                shown.patient_of[appointment] = patient
                shown.add(shown.patients, patient, practice, 4 | i << 8)  # groups told apart per request
        works.append(LedgerWork(entry(), shown))
    inserts = []

    def on_insert(_connection, _cursor, statement, *_rest) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "WITH")):
            inserts.append(statement)

    event.listen(async_engine.sync_engine, "before_cursor_execute", on_insert)
    try:
        await asyncio.gather(*(committer.commit(work) for work in works))
    finally:
        event.remove(async_engine.sync_engine, "before_cursor_execute", on_insert)
    # PostgreSQL: one statement per record with its disclosures; SQLite: each record, then its disclosures
    # naming the last record written (sent with the transaction's last statement)
    assert len(inserts) == (10 if async_engine.dialect.name == "postgresql" else 2 * 10)
    with Session(sync_engine) as session:
        rows = session.execute(select(AccessRecord.request_id, AccessRecord.id)).all()
        read_back = {request: disclosed(session, Disclosure.access_id == access_id) for request, access_id in rows}
        written = session.scalar(select(func.count()).select_from(Disclosure))
    assert written == sum(range(1, 11))  # one row per appointment, its patient carried on it
    for work in works:
        assert work.disclosures is not None
        back = read_back[work.entry.request_id]
        assert (back.appointments, back.patients) == (work.disclosures.appointments, work.disclosures.patients)


async def test_a_batch_holds_at_most_max_batch_records(committer, async_engine, sync_engine):
    committer.max_batch = 8
    works = [LedgerWork(entry()) for _ in range(20)]
    with ledger_commits(async_engine) as commits:
        await asyncio.gather(*(committer.commit(work) for work in works))
    assert commits == [1, 8, 8, 3]
    assert len(recorded(sync_engine)) == 20


async def test_a_record_the_database_refuses_fails_its_own_request_only(
    committer, async_engine, sync_engine, monkeypatch
):
    poisoned(monkeypatch)
    logged = LoggedWith()
    logging.getLogger("api").addHandler(logged)
    first = logs.request_id.set("the-first-request")  # the request whose commit starts the committer
    works = [LedgerWork(entry(POISON if i == 3 else "Day")) for i in range(10)]
    try:
        with ledger_commits(async_engine) as commits:
            answers = await asyncio.gather(*(committer.commit(work) for work in works), return_exceptions=True)
    finally:
        logging.getLogger("api").removeHandler(logged)
        logs.request_id.reset(first)
    assert [type(answer) for answer in answers] == [IntegrityError if i == 3 else type(None) for i in range(10)]
    assert commits == [1] * 9  # the first alone; the batch of the nine others failed whole; each then alone
    assert set(recorded(sync_engine)) == {work.entry.request_id for i, work in enumerate(works) if i != 3}
    # said once, and as no request's: the batch was nine requests'
    assert logged.lines == [("a batch of 9 ledger records failed; each is tried alone", None)]


class LoggedWith(logging.Handler):
    """The log lines, each with the request id its JSON line would carry (api/http/logs.py)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), logs.request_id.get()))


class StatementCancelled(Exception):
    sqlstate = "57014"  # PostgreSQL's query_canceled: the statement ran past statement_timeout


@pytest.mark.parametrize(
    "failure", [ConnectionRefusedError("the database is away"), StatementCancelled("statement timeout")]
)
async def test_when_the_database_is_away_or_too_slow_a_failed_batch_is_not_retried_one_by_one(
    committer, sync_engine, monkeypatch, failure
):
    attempts = []

    async def failing(*_args, **_kwargs):
        attempts.append(1)
        raise failure

    monkeypatch.setattr("api.ledger.access.write", failing)
    monkeypatch.setattr("api.ledger.access.write_many", failing)
    answers = await asyncio.gather(*(committer.commit(LedgerWork(entry())) for _ in range(10)), return_exceptions=True)
    assert answers == [failure] * 10
    assert attempts == [1, 1]  # the first alone, then the batch of the nine others; none retried alone
    assert recorded(sync_engine) == {}


async def test_draining_commits_everything_queued(committer, sync_engine):
    works = [LedgerWork(entry()) for _ in range(12)]
    waiting = [asyncio.create_task(committer.commit(work)) for work in works]
    await asyncio.sleep(0)  # queued, not yet committed
    assert recorded(sync_engine) == {}
    await committer.drain()
    assert set(recorded(sync_engine)) == {work.entry.request_id for work in works}
    assert all(task.done() and task.exception() is None for task in waiting)


async def test_a_request_gone_before_its_commit_is_recorded_all_the_same(committer, sync_engine):
    """A client leaving (its task cancelled) does not take its record, nor its batch's, with it."""
    works = [LedgerWork(entry()) for _ in range(5)]
    waiting = [asyncio.create_task(committer.commit(work)) for work in works]
    await asyncio.sleep(0)
    waiting[1].cancel()
    await committer.drain()
    assert set(recorded(sync_engine)) == {work.entry.request_id for work in works}
    assert [task.cancelled() for task in waiting] == [False, True, False, False, False]


# Through the app: concurrent requests, each with its own records, disclosures and refund.

CONCURRENT = 30


def busy_api(make_api, sync_engine, capacity: int = 100_000, **overrides):
    """The app with room for a burst of one partner: its first requests arrive before its key is known,
    and its bucket exists, as after its first request (concurrent first charges race to create it)."""
    with Session(sync_engine) as session:
        partner = operators.find_partner(session, "full")
        session.add(PartnerBudget(partner_id=partner.id, points=float(capacity), refilled_at=time.time()))
        session.commit()
    return make_api(
        max_concurrent_requests_per_partner=8,
        failed_requests_per_address=1000,
        budget_capacity=capacity,
        budget_refill_per_second=0.001,
        **overrides,
    )


def disclosed_ids(sync_engine, request_id: str) -> set[str]:
    with Session(sync_engine) as session:
        access_id = session.scalar(select(AccessRecord.id).where(AccessRecord.request_id == request_id))
        return set(by_public_id(session, Disclosure.access_id == access_id))


async def concurrently(api, world, sizes: list[int], operation_name: str = "Day") -> list:
    query = PAGE.replace("query Day(", f"query {operation_name}(")
    page = {"p": world.practice_id("A"), **window_args()}
    return await asyncio.gather(*(api.query(world.keys["full"], query, {**page, "n": n}) for n in sizes))


async def test_concurrent_requests_are_recorded_together_each_with_its_own_disclosures_and_refund(
    make_api, world, sync_engine
):
    api = busy_api(make_api, sync_engine)
    sizes = [1 + i % 7 for i in range(CONCURRENT)]
    with ledger_commits(api.http._transport.app.state.engine) as commits:
        responses = await concurrently(api, world, sizes)
    assert [response.status for response in responses] == [200] * CONCURRENT
    assert sum(commits) == CONCURRENT and len(commits) < CONCURRENT  # grouped: fewer commits than requests
    records = recorded(sync_engine)
    for response in responses:
        request_id = response.headers["X-Request-Id"]
        assert records[request_id].outcome == "served"
        returned = {value for key, value in walk(response.data) if key == "id"}
        assert returned and disclosed_ids(sync_engine, request_id) == returned
    spent = sum(response.body["extensions"]["cost"]["actualQueryCost"] for response in responses)
    assert await budget_left(api, world) == 100_000 - spent  # every request's unspent points given back


async def test_a_failed_batch_sends_no_data_keeps_nothing_and_gives_every_charge_back(
    make_api, world, sync_engine, monkeypatch
):
    api = busy_api(make_api, sync_engine)
    for name in ("write", "write_many"):  # one request's, or a batch's
        monkeypatch.setattr(f"api.ledger.access.{name}", fails_after_writing(getattr(ledger_access, name)))
    responses = await concurrently(api, world, [5] * 20)
    monkeypatch.undo()
    for response in responses:
        assert response.status == 503 and response.data is None, response.body
        assert {e["extensions"]["reason"] for e in response.errors} == {"LEDGER_UNAVAILABLE"}
        assert "pat_" not in str(response.body)
    assert recorded(sync_engine) == {}
    with Session(sync_engine) as session:
        assert session.scalar(select(func.count()).select_from(Disclosure)) == 0
    assert await budget_left(api, world) == 100_000


async def test_a_poisoned_request_fails_alone_among_concurrent_ones(make_api, world, sync_engine, monkeypatch):
    """A first request's commit is held until sixteen more queue behind it, the poison among them."""
    api = busy_api(make_api, sync_engine, max_concurrent_requests_per_worker=32)
    poisoned(monkeypatch)
    names = [POISON if i == 4 else "Fine" for i in range(16)]
    batches: list[list[str | None]] = []
    leading, all_queued = asyncio.Event(), asyncio.Event()
    commit, commit_batch, queued = GroupCommit.commit, GroupCommit._commit_batch, []

    async def counted(self, work):
        queued.append(work)
        if len(queued) == 1 + len(names):
            all_queued.set()
        await commit(self, work)

    async def held_first(self, batch):
        batches.append([work.entry.operation_name for work, _ in batch])
        if len(batches) == 1:
            leading.set()
            await all_queued.wait()
        await commit_batch(self, batch)

    # The lead came from an address not yet known as the partner's: it must not make the burst take turns.
    monkeypatch.setattr(FairTurns, "share", lambda turns: turns.places)
    monkeypatch.setattr(GroupCommit, "commit", counted)
    monkeypatch.setattr(GroupCommit, "_commit_batch", held_first)
    lead = asyncio.create_task(concurrently(api, world, [3], "Lead"))
    async with asyncio.timeout(60):
        await leading.wait()
        responses = await asyncio.gather(*(concurrently(api, world, [3], name) for name in names))
        [lead_response] = await lead
    assert batches[0] == ["Lead"] and sorted(batches[1]) == sorted(names)  # the poison was queued with others
    assert sorted(map(tuple, batches[2:])) == sorted((name,) for name in names)  # then each tried alone
    records = recorded(sync_engine)
    assert lead_response.status == 200 and lead_response.headers["X-Request-Id"] in records
    for name, (response,) in zip(names, responses, strict=True):
        if name == POISON:
            assert response.status == 503 and response.data is None, response.body
            assert response.headers["X-Request-Id"] not in records
        else:
            assert response.status == 200 and records[response.headers["X-Request-Id"]].outcome == "served"


async def test_a_stopping_worker_commits_the_records_still_queued(make_api, world, sync_engine):
    """The app's lifespan drains the committer before it closes the engine (api/http/app.py)."""
    api = make_api()
    app = api.http._transport.app
    works = [LedgerWork(entry()) for _ in range(10)]
    async with app.router.lifespan_context(app):
        waiting = [asyncio.create_task(app.state.ledger.commit(work)) for work in works]
        await asyncio.sleep(0)
    assert set(recorded(sync_engine)) == {work.entry.request_id for work in works}
    assert all(task.done() and task.exception() is None for task in waiting)
