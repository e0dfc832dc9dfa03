"""No log line carries a statement's parameters: whatever fails while a new patient is inserted
(the database lost mid-insert, a constraint it refuses, a statement timeout, an unexpected exception
in a resolver), the patient's name, phone and e-mail never reach the log, neither in the JSON lines
`serve` writes nor in a plain traceback (SQLAlchemy hides the parameters: `hide_parameters`)."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from api.data import models
from api.http.logs import JsonFormatter
from api.services import writes
from tests.world import DAY

BOOK = """mutation($input: BookAppointmentInput!) { bookAppointment(input: $input) {
  __typename ... on AppointmentBooked { appointment { id } } } }"""
PATIENT = {
    "firstName": "Zéphyrine",
    "lastName": "Quatremare",
    "gender": "FEMALE",
    "phone": "+33 6 98 76 54 32",
    "email": "zephyrine.q@example.org",
}
SECRETS = ("Zéphyrine", "Quatremare", "98 76 54", "zephyrine.q")
ON_POSTGRESQL = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def logged():
    """All the app logs during a test, as `serve` writes it (JSON) and as a plain formatter would (with tracebacks)."""
    streams = {"json": io.StringIO(), "plain": io.StringIO()}
    handlers = [logging.StreamHandler(streams["json"]), logging.StreamHandler(streams["plain"])]
    handlers[0].setFormatter(JsonFormatter())
    handlers[1].setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root, level = logging.getLogger(), logging.getLogger().level
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: {name: stream.getvalue() for name, stream in streams.items()}
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)


def book_new_patient(api, world):
    start = DAY + timedelta(days=5)
    booking = {
        "practiceId": world.practice_id("A"),
        "practitionerId": world.practitioners["A"][0],
        "startsAt": start.isoformat(),
        "endsAt": (start + timedelta(minutes=20)).isoformat(),
        "newPatient": PATIENT,
    }
    return api.query(world.keys["full"], BOOK, {"input": booking})


def assert_nothing_personal(logs: dict[str, str]) -> None:
    for name, text_ in logs.items():
        assert [secret for secret in SECRETS if secret in text_] == [], f"{name} log:\n{text_}"


def failing_patient_insert(monkeypatch, before_insert) -> None:
    """`before_insert()` runs just before the new patient's INSERT, the statement holding the personal data."""
    slot_taken = writes._slot_taken

    async def then_fail(*args):
        taken = await slot_taken(*args)
        await before_insert()
        return taken

    monkeypatch.setattr(writes, "_slot_taken", then_fail)


@ON_POSTGRESQL  # an embedded SQLite database does not go away
async def test_the_database_lost_mid_insert_logs_no_patient_data(api, world, database_url, logged, monkeypatch):
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).errors == []  # the pool holds a live connection
    admin = create_engine(
        database_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )

    async def cut() -> None:
        with admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND "
                    "pid <> pg_backend_pid()"
                )
            )

    failing_patient_insert(monkeypatch, cut)
    try:
        response = await book_new_patient(api, world)
    finally:
        admin.dispose()
    assert "INTERNAL_SERVER_ERROR" in response.codes and "database unavailable" in logged()["plain"]
    assert_nothing_personal(logged())


async def test_a_constraint_the_database_refuses_logs_no_patient_data(api, world, logged, monkeypatch):
    # A practice that does not exist: the foreign key refuses the INSERT, on both databases.
    monkeypatch.setattr(writes, "Patient", lambda **fields: models.Patient(**{**fields, "practice_id": -1}))
    response = await book_new_patient(api, world)
    assert response.codes == {"INTERNAL_SERVER_ERROR"} and "IntegrityError" in logged()["plain"]
    assert "[SQL parameters hidden" in logged()["plain"]  # the statement is there, its values are not
    assert_nothing_personal(logged())


@ON_POSTGRESQL  # statement_timeout is PostgreSQL's
async def test_a_statement_timeout_on_the_insert_logs_no_patient_data(
    make_api, world, database_url, logged, monkeypatch
):
    api = make_api(statement_timeout_seconds=0.2)
    admin = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.connect() as holder:

        async def lock() -> None:  # the INSERT waits for the lock until the server cancels it
            holder.execute(text("LOCK TABLE patients IN ACCESS EXCLUSIVE MODE"))

        failing_patient_insert(monkeypatch, lock)
        response = await book_new_patient(api, world)
        holder.rollback()
    admin.dispose()
    assert response.status == 503 and response.body["errors"][0]["extensions"]["reason"] == "TIMEOUT", response.body
    assert_nothing_personal(logged())


async def test_an_unexpected_exception_in_a_resolver_logs_no_patient_data(api, world, logged, monkeypatch):
    async def broken(_ctx, *_args):
        raise RuntimeError(
            f"could not book {PATIENT['firstName']} {PATIENT['lastName']} {PATIENT['phone']} {PATIENT['email']}"
        )

    monkeypatch.setattr(writes, "book", broken)
    response = await book_new_patient(api, world)
    assert response.codes == {"INTERNAL_SERVER_ERROR"} and '"builtins.RuntimeError"' in logged()["json"]
    assert_nothing_personal({"json": logged()["json"]})  # the JSON lines of `serve` hold types and frames, no message
