"""A booking, rescheduling or cancellation commits in one transaction with its access record: when
the record cannot be written, the write is not made either, the client is told so (503 with a
reason and Retry-After), and its retry is clean (the slot free, the idempotency key unused)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

import api.ledger.access
from api.data.models import AccessRecord, Appointment, AppointmentStatus, IdempotencyRecord, Patient, PatientDisclosure
from tests.services.test_writes_and_sync import BOOK, CANCEL, FREE, RESCHEDULE, booking

NEW_PATIENT = {"firstName": "Inès", "lastName": "Ledgerless", "gender": "FEMALE"}


def failing_once(monkeypatch) -> None:
    """The next ledger write fails (a full disk, a lost connection); the following ones work."""
    write = api.ledger.access.write
    failed = False

    async def once(*args, **kwargs):
        nonlocal failed
        if not failed:
            failed = True
            raise RuntimeError("disk full")
        return await write(*args, **kwargs)

    monkeypatch.setattr("api.ledger.access.write", once)


def count(sync_engine, statement) -> int:
    with Session(sync_engine) as session:
        return session.scalar(statement) or 0


def booked_at(sync_engine, start) -> int:
    return count(sync_engine, select(func.count()).select_from(Appointment).where(
        Appointment.starts_at == start, Appointment.status != AppointmentStatus.CANCELLED,
    ))


def assert_unrecorded_write(response, reason: str = "LEDGER_UNAVAILABLE") -> None:
    assert response.status == 503 and response.data is None, response.body
    [error] = response.errors
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR" and error["extensions"]["reason"] == reason, error
    assert "nothing was changed" in error["message"]
    assert int(response.headers["Retry-After"]) == error["extensions"]["retryAfter"] > 0


async def test_a_booking_whose_record_cannot_be_written_is_not_made_and_its_retry_books_it(
    api, world, sync_engine, monkeypatch
):
    failing_once(monkeypatch)
    variables = {"input": booking(world, FREE, idempotencyKey="sync-7")}
    records_before = count(sync_engine, select(func.count()).select_from(AccessRecord))

    refused = await api.query(world.keys["full"], BOOK, variables)
    assert booked_at(sync_engine, FREE) == 0
    assert count(sync_engine, select(func.count()).select_from(IdempotencyRecord)) == 0
    assert count(sync_engine, select(func.count()).select_from(AccessRecord)) == records_before  # nothing half-written
    assert_unrecorded_write(refused)

    retried = await api.query(world.keys["full"], BOOK, variables)  # the same key: a first booking, not a replay
    assert retried.status == 200 and retried.data["bookAppointment"]["__typename"] == "AppointmentBooked", retried.body
    assert booked_at(sync_engine, FREE) == 1
    with Session(sync_engine) as session:
        record = session.scalars(select(AccessRecord).order_by(AccessRecord.id.desc())).first()
        assert record is not None and (record.outcome, record.http_status) == ("served", 200)


async def test_a_booking_without_a_key_is_clean_to_retry_too(api, world, sync_engine, monkeypatch):
    failing_once(monkeypatch)
    refused = await api.query(world.keys["full"], BOOK, {"input": booking(world, FREE)})
    assert booked_at(sync_engine, FREE) == 0
    assert_unrecorded_write(refused)
    retried = await api.query(world.keys["full"], BOOK, {"input": booking(world, FREE)})
    assert retried.data["bookAppointment"]["__typename"] == "AppointmentBooked", (
        retried.body
    )  # never SLOT_TAKEN by itself


async def test_a_new_patient_booked_unrecorded_leaves_neither_patient_nor_distinct_patient_window(
    api, world, sync_engine, monkeypatch
):
    """The patient shown in the answer passes the distinct-patient budget inside the write: its window
    commits with the write, or not at all."""
    failing_once(monkeypatch)
    variables = {"input": {**booking(world, FREE), "patientId": None, "newPatient": NEW_PATIENT}}
    refused = await api.query(world.keys["full"], BOOK, variables)
    created = select(Patient.id).where(Patient.last_name == "Ledgerless")
    assert count(sync_engine, select(func.count()).select_from(created.subquery())) == 0
    assert count(sync_engine, select(func.count()).select_from(PatientDisclosure)) == 0
    assert_unrecorded_write(refused)

    served = await api.query(world.keys["full"], BOOK, variables)
    assert served.data["bookAppointment"]["appointment"]["patient"]["firstName"] == "Inès", served.body
    # A patient the partner created itself takes nothing from the practice's file (test_extraction.py).
    assert count(sync_engine, select(func.count()).select_from(PatientDisclosure)) == 0

    existing = {"input": booking(world, FREE + timedelta(hours=1))}  # a patient of the practice's file
    failing_once(monkeypatch)
    assert_unrecorded_write(await api.query(world.keys["full"], BOOK, existing))
    assert count(sync_engine, select(func.count()).select_from(PatientDisclosure)) == 0
    served = await api.query(world.keys["full"], BOOK, existing)
    assert served.data["bookAppointment"]["__typename"] == "AppointmentBooked", served.body
    assert count(sync_engine, select(func.count()).select_from(PatientDisclosure)) == 1


async def test_a_reschedule_or_cancellation_unrecorded_leaves_the_appointment_as_it_was(
    api, world, sync_engine, monkeypatch
):
    appointment = world.appointments["A"][0]
    with Session(sync_engine) as session:
        before = session.scalars(select(Appointment).where(Appointment.public_id == appointment)).one()
        state = (before.starts_at, before.status, before.change_seq)

    failing_once(monkeypatch)
    moved = {
        "appointmentId": appointment,
        "startsAt": FREE.isoformat(),
        "endsAt": (FREE + timedelta(minutes=20)).isoformat(),
    }
    assert_unrecorded_write(await api.query(world.keys["full"], RESCHEDULE, {"input": moved}))
    failing_once(monkeypatch)
    assert_unrecorded_write(await api.query(world.keys["full"], CANCEL, {"id": appointment}))
    with Session(sync_engine) as session:
        after = session.scalars(select(Appointment).where(Appointment.public_id == appointment)).one()
        assert (after.starts_at, after.status, after.change_seq) == state


async def test_two_bookings_in_one_document_are_kept_or_undone_together(api, world, sync_engine, monkeypatch):
    """The second booking is refused (an unknown practice): the response carries no data, so the
    first one, which it reports nothing about, is not kept."""
    document = """mutation($a: BookAppointmentInput!, $b: BookAppointmentInput!) {
      a: bookAppointment(input: $a) { __typename } b: bookAppointment(input: $b) { __typename } }"""
    unknown = {**booking(world, FREE + timedelta(hours=1)), "practiceId": "prc_" + "0" * 20}
    response = await api.query(world.keys["full"], document, {"a": booking(world, FREE), "b": unknown})
    assert response.data is None and response.codes == {"NOT_FOUND"}, response.body
    assert booked_at(sync_engine, FREE) == 0


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_a_locked_ledger_table_on_postgresql_undoes_the_booking(make_api, world, database_url, sync_engine):
    """The reproduction: the ledger table locked by another session past the statement timeout."""
    api = make_api(statement_timeout_seconds=0.3)
    variables = {"input": booking(world, FREE, idempotencyKey="locked-1")}
    holder = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with holder.connect() as locker:
            locker.execute(text("LOCK TABLE access_records IN ACCESS EXCLUSIVE MODE"))
            refused = await api.query(world.keys["full"], BOOK, variables)
            locker.rollback()
    finally:
        holder.dispose()
    assert booked_at(sync_engine, FREE) == 0
    assert count(sync_engine, select(func.count()).select_from(IdempotencyRecord)) == 0
    assert_unrecorded_write(refused)

    retried = await api.query(world.keys["full"], BOOK, variables)
    assert retried.data["bookAppointment"]["__typename"] == "AppointmentBooked", retried.body
    assert booked_at(sync_engine, FREE) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_writers_queue_behind_a_booking_until_its_record_commits(make_api, world, sync_engine):
    """The booking keeps SQLite's writer lock until its record: concurrent reads' ledger writes wait
    their turn instead of failing on "database is locked"."""
    api = make_api(statement_timeout_seconds=0.5)
    reads = [api.query(world.keys["other"], "{ viewer { name } }") for _ in range(5)]
    results = await asyncio.gather(api.query(world.keys["full"], BOOK, {"input": booking(world, FREE)}), *reads)
    assert results[0].data["bookAppointment"]["__typename"] == "AppointmentBooked", results[0].body
    assert all(r.status == 200 and r.errors == [] for r in results[1:])
