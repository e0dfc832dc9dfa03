"""Timeouts and outages: a request that runs too long, a statement the database stops, the
database going away mid-request. Each gets a clear, structured refusal, is recorded in the ledger
when the ledger can be written, never sends data that was not recorded, and the next request is
served as usual."""

from __future__ import annotations

import asyncio
import socket

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.orm import Session

from api.data.models import AccessRecord, Disclosure
from api.http.app import create_app
from api.protection.budgets import Budgets
from api.services.unit_of_work import UnitOfWork
from api.settings import Settings
from tests.client import ApiClient
from tests.world import window_args

ON_POSTGRESQL = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
PAGE = """query Page($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 5) { edges { node { id reason patient { lastName } } }
} }"""


def page(world):
    return {"p": world.practice_id("A"), **window_args()}


def last_record(sync_engine) -> AccessRecord:
    with Session(sync_engine) as session:
        record = session.scalars(select(AccessRecord).order_by(AccessRecord.id.desc())).first()
        assert record is not None
        session.expunge(record)
        return record


def disclosed(sync_engine, record: AccessRecord) -> int:
    with Session(sync_engine) as session:
        return len(session.scalars(select(Disclosure).where(Disclosure.access_id == record.id)).all())


# A second or so of the database's work, cut in the driver by a cancellation.
SLOW_STATEMENT = {
    "postgresql": "SELECT pg_sleep(1.5)",
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8000000) "
    "SELECT count(*) FROM n",
}


def slowed(monkeypatch, before):
    """Every read a resolver or a compiled plan runs first awaits `before(context)`."""
    read = UnitOfWork._read

    async def slow(self, statement, orm, parameters):
        await before(self)
        return await read(self, statement, orm, parameters)

    monkeypatch.setattr(UnitOfWork, "_read", slow)


def assert_timeout(response, limit: str) -> None:
    assert response.status == 503 and response.data is None, response.body
    [error] = response.body["errors"]
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED" and error["extensions"]["reason"] == "TIMEOUT", error
    assert error["extensions"]["limit"] == f"{limit}_timeout" and "timeout" in error["message"]


async def test_a_request_past_its_timeout_is_stopped_recorded_and_the_next_one_served(
    make_api, world, sync_engine, monkeypatch
):
    api = make_api()
    assert (await api.query(world.keys["full"], PAGE, page(world))).errors == []  # warm, under the default timeout
    # Then a short timeout, and a statement that never ends: only the timeout can stop the request.
    monkeypatch.setattr(api.http._transport.app.state.settings, "request_timeout_seconds", 0.5)  # type: ignore[attr-defined]
    reached, never = asyncio.Event(), asyncio.Event()

    async def stall(_uow) -> None:
        reached.set()
        await never.wait()

    slowed(monkeypatch, stall)
    response = await api.query(world.keys["full"], PAGE, page(world))
    assert reached.is_set()
    assert_timeout(response, "request")
    record = last_record(sync_engine)
    assert (record.outcome, record.error_code, record.http_status) == ("refused", "COST_LIMIT_EXCEEDED", 503)
    assert record.partner_id is not None and disclosed(sync_engine, record) == 0
    # charged before it ran (5 rows x 4), never finished
    assert record.requested_cost == 20 and record.actual_cost is None

    monkeypatch.undo()
    served = await api.query(world.keys["full"], PAGE, page(world))
    assert served.status == 200 and served.errors == [] and served.data["appointments"]["edges"]


@ON_POSTGRESQL  # statement_timeout is PostgreSQL's
async def test_a_statement_past_the_database_timeout_is_stopped_and_recorded(make_api, world, sync_engine, monkeypatch):
    api = make_api(statement_timeout_seconds=0.1)
    slowed(monkeypatch, lambda uow: uow.session.execute(text("SELECT pg_sleep(2)")))
    response = await api.query(world.keys["full"], PAGE, page(world))
    assert_timeout(response, "statement")
    record = last_record(sync_engine)
    assert (record.error_code, record.http_status) == ("COST_LIMIT_EXCEEDED", 503) and disclosed(
        sync_engine, record
    ) == 0

    monkeypatch.undo()
    assert (await api.query(world.keys["full"], PAGE, page(world))).errors == []


@ON_POSTGRESQL  # an embedded SQLite database does not go away
async def test_the_database_going_away_mid_request_is_a_clear_refusal_and_the_server_recovers(
    make_api, world, database_url, sync_engine, monkeypatch
):
    api = make_api()
    assert (await api.query(world.keys["full"], PAGE, page(world))).errors == []  # the pool holds a live connection
    admin = create_engine(
        database_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )

    async def cut(_context) -> None:  # every connection of the app's, as a restart or failover would
        with admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND "
                    "pid <> pg_backend_pid()"
                )
            )

    slowed(monkeypatch, cut)
    try:
        response = await api.query(world.keys["full"], PAGE, page(world))
    finally:
        monkeypatch.undo()
        admin.dispose()
    assert response.status == 503 and response.data is None, response.body
    [error] = response.body["errors"]
    assert (
        error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        and error["extensions"]["reason"] == "DATABASE_UNAVAILABLE"
    )
    assert error["extensions"]["requestId"] and "retry later" in error["message"]
    assert int(response.headers["Retry-After"]) == error["extensions"]["retryAfter"] > 0
    assert "Motif" not in str(response.body) and "pat_" not in str(response.body)

    # The ledger, written on a new connection, holds the refusal; the next requests are served.
    sync_engine.dispose()  # the test's own connections were cut too
    record = last_record(sync_engine)
    assert (record.outcome, record.http_status) == ("refused", 503) and disclosed(sync_engine, record) == 0
    assert (await api.http.get("/readyz")).status_code == 200
    assert (await api.query(world.keys["full"], PAGE, page(world))).errors == []


async def test_an_unreachable_database_is_a_503_counted_in_the_metrics_and_readyz_says_so(world):
    """No server listens where the database should be: authentication cannot run, neither can the
    ledger; the answer is still structured, and the refusal is counted and logged."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(Settings(database_url=f"postgresql://nobody@127.0.0.1:{port}/none", secret_key="x"))
    api = ApiClient(app)
    labels = {"partner": "", "outcome": "refused", "code": "INTERNAL_SERVER_ERROR"}
    counted = REGISTRY.get_sample_value("partner_api_requests_total", labels) or 0
    try:
        response = await api.query(world.keys["full"], "{ viewer { name } }")
        assert response.status == 503 and response.data is None
        [error] = response.body["errors"]
        assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR" and "retry later" in error["message"]
        assert error["extensions"]["requestId"] == response.headers["X-Request-Id"]
        assert (await api.http.get("/readyz")).status_code == 503
        assert REGISTRY.get_sample_value("partner_api_requests_total", labels) == counted + 1
    finally:
        await api.close()
        await app.state.engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL locks rows, not the database
async def test_sqlite_locked_by_another_writer_past_the_timeout_is_a_503_and_the_server_recovers(
    make_api, world, sync_engine, monkeypatch
):
    api = make_api(statement_timeout_seconds=0.3)
    take = Budgets.take

    async def take_while_another_process_writes(self, *args):
        with sync_engine.connect() as holder:
            holder.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                return await take(self, *args)
            finally:
                holder.rollback()

    monkeypatch.setattr(Budgets, "take", take_while_another_process_writes)
    response = await api.query(world.keys["full"], PAGE, page(world))
    assert response.status == 503 and response.data is None, response.body
    [error] = response.body["errors"]
    assert (
        error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        and error["extensions"]["reason"] == "DATABASE_UNAVAILABLE"
    )
    assert "retry later" in error["message"] and "locked" not in str(response.body)
    record = last_record(sync_engine)  # the ledger, written once the other writer is done
    assert (record.outcome, record.http_status) == ("refused", 503) and disclosed(sync_engine, record) == 0

    monkeypatch.undo()
    assert (await api.query(world.keys["full"], PAGE, page(world))).errors == []


@pytest.mark.parametrize(
    ("what", "key", "body", "content_type"),
    [
        ("a valid request", "full", b'{"query": "{ viewer { name } }"}', "application/json"),
        ("a body that is not JSON", "full", b'{"query": ', "application/json"),
        ("a form body", "full", b"query=%7B%7D", "application/x-www-form-urlencoded"),
        ("an unknown key", "wrong", b'{"query": "{ viewer { name } }"}', "application/json"),
        ("no key at all", None, b'{"query": "{ viewer { name } }"}', "application/json"),
        (
            "a mutation",
            "full",
            b'{"query": "mutation { cancelAppointment(appointmentId: \\"apt_1\\") { __typename } }"}',
            "application/json",
        ),
    ],
)
async def test_while_the_database_is_unreachable_every_request_is_told_so_with_retry_after(
    world, what, key, body, content_type
):
    """The outage is named as such, whatever the request: not a ledger failure, a 400 or a 401
    (those need the ledger, which is in the database too)."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(Settings(database_url=f"postgresql://nobody@127.0.0.1:{port}/none", secret_key="x"))
    api = ApiClient(app)
    token = {"full": world.keys["full"], "wrong": "pk_000000000000_" + "x" * 32, None: None}[key]
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        response = await api.http.post("/graphql", content=body, headers=headers)
    finally:
        await api.close()
        await app.state.engine.dispose()
    assert response.status_code == 503, (what, response.text)
    [error] = response.json()["errors"]
    assert (
        error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        and error["extensions"]["reason"] == "DATABASE_UNAVAILABLE"
    ), (what, error)
    assert int(response.headers["Retry-After"]) == error["extensions"]["retryAfter"] > 0
    assert "retry later" in error["message"] and "nobody" not in response.text and "127.0.0.1" not in response.text



async def test_a_batch_read_cut_by_the_timeout_leaves_the_request_recorded_and_the_pool_sound(
    make_api, world, sync_engine, monkeypatch
):
    """A DataLoader's batch runs in a task of its own, which strawberry cancels, without awaiting it,
    when the field waiting for it is cancelled. Cut mid-statement, the driver then closes that
    statement's connection: the request must wait for that, so that the closing connection goes neither
    back to the pool nor to the request's access record."""
    api = make_api()
    monkeypatch.setattr(api.http._transport.app.state.settings, "request_timeout_seconds", 0.3)  # type: ignore[attr-defined]
    document = "query($id: ID!) { node(id: $id) { id } }"
    practitioner = {"id": world.practitioners["A"][0]}
    request, cut = asyncio.current_task(), False  # the in-process client serves the request in this task

    def in_flight(connection, cursor, *_args) -> None:  # a read of the batch's task: the database is slow
        nonlocal cut
        if not cut and asyncio.current_task() is not request:
            cut = True
            cursor.execute(SLOW_STATEMENT[connection.dialect.name])

    event.listen(Engine, "before_cursor_execute", in_flight)
    try:
        for _ in range(3):  # on a loaded machine, the timeout may come before the batch's read
            response = await api.query(world.keys["full"], document, practitioner)
            if cut:
                break
    finally:
        event.remove(Engine, "before_cursor_execute", in_flight)
    assert cut, "the batch's read did not run"
    assert_timeout(response, "request")
    record = last_record(sync_engine)
    assert (record.outcome, record.error_code, record.http_status) == ("refused", "COST_LIMIT_EXCEEDED", 503)

    for _ in range(3):  # each connection of the pool still works
        served = await api.query(world.keys["full"], document, practitioner)
        assert served.status == 200 and served.errors == [] and served.data["node"], served.body
