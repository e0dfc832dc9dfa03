"""One ledger row per appointment, naming its patient (api/ledger/access.py `Disclosures.rows`): half
the rows for a page of appointments with their patients, and exactly the same records, groups and
reports as one row per record, the shape of every row written before it. The ledger keeps the records
it names when the practice deletes them."""

from __future__ import annotations

import functools
import operator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, inspect, select, text, update
from sqlalchemy.orm import Session

from api.data.migrate import alembic_config, run
from api.data.models import AccessRecord, Appointment, AppointmentStatus, Disclosure, Gender, Patient, Practice
from api.ledger.access import DISCLOSED_GROUPS, PATIENT_GROUPS, Disclosures, FieldGroup
from api.ledger.exposure import PartnerExposure, partner_exposure, patient_readers
from api.timeutil import utcnow
from tests.compiled.conftest import plan_runs
from tests.ledger.rows import DISCLOSURES, disclosed
from tests.world import DAY, window_args

__all__ = ["plan_runs"]  # the fixture, for the tests below

APPOINTMENT, PATIENT = FieldGroup.APPOINTMENT, FieldGroup.PATIENT
IDENTITY, CONTACT, REASON = FieldGroup.IDENTITY, FieldGroup.CONTACT, FieldGroup.REASON

PAGE = """query Day($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!) {
  appointments(practiceId: $p, from: $from, to: $to, first: $n) {
    edges { node { id startsAt patient { id firstName } } } } }"""
TWO = """query Two($a: ID!, $b: ID!) {
  a: node(id: $a) { ... on Appointment { id patient { id firstName } } }
  b: node(id: $b) { ... on Appointment { id reason patient { id phone } } } }"""
EXECUTORS = pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "general-executor"])


def last_request_rows(session: Session) -> list[Any]:
    access_id = session.scalar(select(AccessRecord.id).order_by(AccessRecord.id.desc()).limit(1))
    return list(session.execute(select(DISCLOSURES).where(Disclosure.access_id == access_id)).mappings())


def add_appointments(sync_engine, count: int) -> None:
    """`count` more appointments at practice A in the test window, each of a patient of its own."""
    with Session(sync_engine) as session, session.begin():
        practice = session.scalar(select(Practice).where(Practice.name == "A"))
        assert practice is not None
        model = session.scalar(select(Appointment).where(Appointment.practice_id == practice.id).limit(1))
        assert model is not None
        for i in range(count):
            patient = Patient(practice_id=practice.id, first_name=f"Nouveau{i}", last_name=f"P{i}", gender=Gender.MALE)
            session.add(patient)
            session.flush()
            starts = DAY + timedelta(hours=4, minutes=10 * i)
            session.add(
                Appointment(
                    practice_id=practice.id,
                    practitioner_id=model.practitioner_id,
                    patient_id=patient.id,
                    starts_at=starts,
                    ends_at=starts + timedelta(minutes=10),
                    status=AppointmentStatus.BOOKED,
                    reason=f"Motif {i}",
                    change_seq=1000 + i,
                )
            )


@EXECUTORS
async def test_a_page_of_50_appointments_with_their_patients_writes_50_rows(
    make_api, world, sync_engine, plan_runs, compiled
):
    add_appointments(sync_engine, 44)  # with the world's 6 (of 3 patients): 50 appointments of 47 patients
    api = make_api(compiled_plans=compiled)
    response = await api.query(world.keys["full"], PAGE, {"p": world.practice_id("A"), **window_args(), "n": 50})
    assert response.errors == [] and len(response.data["appointments"]["edges"]) == 50
    assert plan_runs["page"] == (1 if compiled else 0)  # the compiled run read its page in one statement
    sent = {edge["node"]["patient"]["id"] for edge in response.data["appointments"]["edges"]}
    with Session(sync_engine) as session:
        rows = last_request_rows(session)
        owner = {a: p for a, p in session.execute(select(Appointment.id, Appointment.patient_id))}
        public = {i: p for i, p in session.execute(select(Patient.id, Patient.public_id))}
    assert len(rows) == 50 and all(row["appointment_id"] is not None for row in rows)  # was 97: one per record
    named = Disclosures.of_rows(rows)
    assert {public[i] for i in named.patients} == sent and len(sent) == 47
    assert {groups for _, groups in named.appointments.values()} == {APPOINTMENT}
    assert {groups for _, groups in named.patients.values()} == {PATIENT | IDENTITY}
    # Each patient's groups on one row: that of their own appointment of lowest id; every row names its patient.
    assert all(row["patient_id"] == owner[row["appointment_id"]] for row in rows)
    carriers = {row["patient_id"]: row["appointment_id"] for row in rows if row["patient_field_groups"]}
    assert len(carriers) == 47 == sum(bool(row["patient_field_groups"]) for row in rows)
    assert carriers == {p: min(a for a in named.appointments if owner[a] == p) for p in named.patients}


@EXECUTORS
async def test_a_patient_of_two_appointments_is_counted_once_with_its_groups_united(
    make_api, world, sync_engine, compiled
):
    since = utcnow() - timedelta(seconds=1)
    first, second = world.appointments["A"][0], world.appointments["A"][3]  # both of the first patient
    api = make_api(compiled_plans=compiled)
    response = await api.query(world.keys["full"], TWO, {"a": first, "b": second})
    assert response.errors == []
    assert response.data["a"]["patient"]["id"] == response.data["b"]["patient"]["id"] == world.patients["A"][0]
    with Session(sync_engine) as session:
        rows = last_request_rows(session)
        named = disclosed(session, Disclosure.access_id == rows[0]["access_id"])
        patient_id = session.scalar(select(Patient.id).where(Patient.public_id == world.patients["A"][0]))
        until = utcnow() + timedelta(seconds=1)
        report = partner_exposure(session, "full", since, until)
        (reader,) = patient_readers(session, world.patients["A"][0], since, until).readers
    assert len(rows) == 2 and {row["patient_id"] for row in rows} == {patient_id}
    assert sorted(bool(row["patient_field_groups"]) for row in rows) == [False, True]  # their groups on one
    assert named.patients == {patient_id: (named.patients[patient_id][0], PATIENT | IDENTITY | CONTACT)}
    assert sorted(groups for _, groups in named.appointments.values()) == [APPOINTMENT, APPOINTMENT | REASON]
    (practice,) = report.practices
    assert (practice.patients, practice.appointments) == (1, 2)
    assert practice.with_groups == {"identity": 1, "contact": 1, "reason": 1, "history": 0}
    (patient,) = report.patients
    assert (patient.patient_id, patient.appointments, patient.requests) == (world.patients["A"][0], 2, 1)
    assert patient.field_groups == APPOINTMENT | REASON | PATIENT | IDENTITY | CONTACT
    assert (reader.field_groups, reader.appointments, reader.requests) == (patient.field_groups, 2, 1)


@EXECUTORS
@pytest.mark.parametrize(
    ("why", "key", "selection", "overrides", "code"),
    [
        (
            "refused",
            "full",
            "patient { id }",
            {"extraction_floor": 1, "extraction_activity_factor": 0.0},
            "EXTRACTION_LIMIT_EXCEEDED",
        ),
        ("not asked", "full", "", {}, None),
    ],
)
async def test_an_appointment_whose_patient_was_not_sent_names_them_with_no_group_of_theirs(
    make_api, world, sync_engine, compiled, why, key, selection, overrides, code
):
    # (No grant forbids `Appointment.patient` where the appointment is readable: authz/fields.polar asks
    # for the appointment's own scope.)
    api = make_api(compiled_plans=compiled, **overrides)
    page = PAGE.replace("patient { id firstName }", selection)
    variables = {"p": world.practice_id("A"), **window_args()}
    if why == "refused":  # the first patient is admitted, then a page with a second is refused
        admitted = await api.query(world.keys[key], page, {**variables, "n": 1})
        assert admitted.errors == []
        with Session(sync_engine) as session:
            (row,) = last_request_rows(session)
        assert row["patient_id"] is not None and row["patient_field_groups"] == PATIENT  # carried when sent
    response = await api.query(world.keys[key], page, {**variables, "n": 3})
    assert response.codes == ({code} if code else set())
    edges = response.data["appointments"]["edges"]
    assert len(edges) == 3 and all(edge["node"].get("patient") is None for edge in edges)
    with Session(sync_engine) as session:
        rows = last_request_rows(session)
        owner = {a: p for a, p in session.execute(select(Appointment.id, Appointment.patient_id))}
    assert len(rows) == 3
    # The appointment concerns its patient: named, for the reports, with none of the groups of their record.
    assert all(row["patient_id"] == owner[row["appointment_id"]] and row["patient_field_groups"] == 0 for row in rows)
    assert Disclosures.of_rows(rows).patients == {}


# --- The migration -------------------------------------------------------------------------------

ONE_ROW = "8b570ec4b19a"  # migrations/versions/2026_11_30_disclosure_patient_groups.py


def rows_before(sync_engine, revision: str) -> tuple[str, tuple[int, int, int]]:
    """Migrates down to just before `revision`, then writes a request's two rows as they were written
    then, one per record: an appointment's (naming no patient) and its patient's. The revision before,
    and the appointment's, patient's and practice's ids."""
    before = ScriptDirectory.from_config(alembic_config()).get_revision(revision).down_revision
    run(sync_engine, command.downgrade, before)
    with sync_engine.begin() as connection:
        appointment, patient, practice = connection.execute(
            text("SELECT id, patient_id, practice_id FROM appointments ORDER BY id LIMIT 1")
        ).one()
        connection.execute(
            text(
                "INSERT INTO disclosures (access_id, at, practice_id, appointment_id, patient_id, field_groups) "
                "VALUES (1, :at, :p, :a, NULL, 3), (1, :at, :p, NULL, :pat, 12)"
            ),
            {"at": utcnow(), "p": practice, "a": appointment, "pat": patient},
        )
    return before, (appointment, patient, practice)


def test_the_migration_keeps_every_row_and_adds_the_column_to_every_month(sync_engine, world):
    """Rows written one per record before it are left as they are (the column NULL: their meaning); on
    PostgreSQL every monthly partition has the column; and it goes back down."""
    before, (appointment, patient, practice) = rows_before(sync_engine, ONE_ROW)
    shape = "SELECT appointment_id, patient_id, field_groups FROM disclosures ORDER BY id"
    with sync_engine.connect() as connection:
        written = connection.execute(text(shape)).all()
    run(sync_engine, command.upgrade, ONE_ROW)
    with sync_engine.connect() as connection:
        assert connection.execute(text(shape)).all() == written
        rows = connection.execute(select(DISCLOSURES)).mappings().all()
        assert [row["patient_field_groups"] for row in rows] == [None, None]
        named = Disclosures.of_rows(rows)
        assert (named.appointments, named.patients) == ({appointment: (practice, 3)}, {patient: (practice, 12)})
        if sync_engine.dialect.name == "postgresql":
            partitions = "SELECT inhrelid FROM pg_inherits WHERE inhparent = 'disclosures'::regclass"
            with_column = (
                f"SELECT count(*) FROM pg_attribute WHERE attrelid IN ({partitions}) "
                "AND attname = 'patient_field_groups' AND NOT attisdropped"
            )
            months = connection.scalar(text(f"SELECT count(*) FROM ({partitions}) p"))
            assert months and connection.scalar(text(with_column)) == months
    # Going down splits a row naming both records into the two rows a response wrote before.
    with sync_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO disclosures (access_id, at, practice_id, appointment_id, patient_id, field_groups, "
                "patient_field_groups) VALUES (2, :at, :p, :a, :pat, 1, 28)"
            ),
            {"at": utcnow(), "p": practice, "a": appointment, "pat": patient},
        )
    run(sync_engine, command.downgrade, before)
    assert "patient_field_groups" not in {c["name"] for c in inspect(sync_engine).get_columns("disclosures")}
    with sync_engine.connect() as connection:
        split = connection.execute(text(f"{shape.replace(' ORDER BY id', '')} WHERE access_id = 2")).all()
        assert sorted(split, key=str) == sorted([(appointment, None, 1), (None, patient, 28)], key=str)
    run(sync_engine, command.upgrade, "head")


KEEPS = "3f9c2d7e1b58"  # migrations/versions/2026_11_30_ledger_keeps_its_records.py
SHAPE = "SELECT appointment_id, patient_id, field_groups, patient_field_groups FROM disclosures ORDER BY id"


def _referred(sync_engine) -> set[str]:
    return {key["referred_table"] for key in inspect(sync_engine).get_foreign_keys("disclosures")}


def test_the_migration_names_every_appointments_patient_and_lets_no_deletion_rewrite_the_ledger(sync_engine, world):
    before, (appointment, patient, _) = rows_before(sync_engine, KEEPS)
    assert _referred(sync_engine) >= {"practices", "appointments", "patients"}
    with sync_engine.begin() as connection:  # an access token's request, recorded without a key prefix
        key, prefix = connection.execute(text("SELECT id, prefix FROM partner_keys ORDER BY id LIMIT 1")).one()
        connection.execute(
            text(
                "INSERT INTO access_records (request_id, at, key_id, key_prefix, client_id, outcome, http_status, "
                "duration_ms) VALUES ('r', :at, :key, NULL, 'client_x', 'served', 200, 1)"
            ),
            {"at": utcnow(), "key": key},
        )
    run(sync_engine, command.upgrade, "head")
    with sync_engine.connect() as connection:  # its credential's, as a served request records it now
        recorded = connection.execute(text("SELECT key_prefix FROM access_records WHERE request_id = 'r'")).one()
    assert recorded == (prefix,)
    assert not _referred(sync_engine) & {"practices", "appointments", "patients"}
    written = [(appointment, patient, 3, 0), (None, patient, 12, None)]
    with sync_engine.begin() as connection:
        assert connection.execute(text(SHAPE)).all() == written
        connection.execute(delete(Appointment).where(Appointment.id == appointment))
        assert connection.execute(text(SHAPE)).all() == written  # the practice's deletion rewrote nothing
    # Going down: the foreign keys back, and what they would have done to the deleted appointment's row.
    run(sync_engine, command.downgrade, before)
    assert _referred(sync_engine) >= {"practices", "appointments", "patients"}
    with sync_engine.connect() as connection:
        assert connection.execute(text(SHAPE)).all() == [(None, None, 3, None), (None, patient, 12, None)]
    run(sync_engine, command.upgrade, "head")


# --- The reports on a ledger of both shapes ---------------------------------------------------------

NODE = "query One($id: ID!) { node(id: $id) { id ... on Patient { email } ... on Appointment { startsAt } } }"
REASON_ONLY = "query One($id: ID!) { node(id: $id) { id ... on Appointment { reason } } }"


def as_one_row_per_record(session: Session, access_ids: list[int]) -> None:
    """Rewrites the requests' rows carrying a patient's groups on their appointment's row as two rows, one
    per record (the appointment's still naming the patient, as migration 3f9c2d7e1b58 left older rows)."""
    combined = session.execute(
        select(DISCLOSURES).where(Disclosure.access_id.in_(access_ids), Disclosure.patient_field_groups != 0)
    ).mappings()
    for row in list(combined):
        session.execute(update(Disclosure).where(Disclosure.id == row["id"]).values(patient_field_groups=0))
        session.execute(
            insert(Disclosure).values(
                access_id=row["access_id"],
                at=row["at"],
                partner_id=row["partner_id"],
                practice_id=row["practice_id"],
                patient_id=row["patient_id"],
                field_groups=row["patient_field_groups"],
            )
        )


def answers(session: Session, world, since, until, erased: set[str]) -> dict[str, Any]:
    """Every report over the period: per partner, and every remaining patient's readers."""
    patients = [p for name in "AB" for p in world.patients[name] if p not in erased]
    return {
        "partners": [partner_exposure(session, name, since, until) for name in ("full", "no-contact", "other")],
        "readers": [patient_readers(session, patient, since, until) for patient in patients],
        "readers, all time": [patient_readers(session, patient) for patient in patients],
    }


def erase(session: Session, world) -> set[str]:
    """The practice deletes an appointment, and a patient with their appointments; it moves another
    appointment to another patient's file (a merged duplicate)."""
    session.execute(delete(Appointment).where(Appointment.public_id == world.appointments["A"][0]))
    patient_id = session.scalar(select(Patient.id).where(Patient.public_id == world.patients["A"][2]))
    session.execute(delete(Appointment).where(Appointment.patient_id == patient_id))
    session.execute(delete(Patient).where(Patient.id == patient_id))
    other = session.scalar(select(Patient.id).where(Patient.public_id == world.patients["A"][1]))
    session.execute(update(Appointment).where(Appointment.public_id == world.appointments["A"][5]).values(
        patient_id=other))  # fmt: skip
    return {world.patients["A"][2]}


def as_deleted(report: PartnerExposure, erased: set[str]) -> PartnerExposure:
    """The report once the patients `erased` are deleted: the same, their public ids gone."""
    return replace(
        report,
        patients=sorted(
            (replace(p, patient_id="(deleted)") if p.patient_id in erased else p for p in report.patients),
            key=lambda p: (p.practice, p.practice_id, p.patient_id),
        ),
    )


async def test_the_reports_give_the_same_answers_on_rows_of_either_shape_whatever_the_practice_deletes(
    api, world, sync_engine
):
    since = utcnow() - timedelta(seconds=1)
    page = {"p": world.practice_id("A"), **window_args()}
    for key, query, variables in [
        ("full", PAGE, {**page, "n": 6}),
        ("full", PAGE.replace("firstName", "phone"), {**page, "n": 2}),
        ("full", TWO, {"a": world.appointments["A"][1], "b": world.appointments["A"][4]}),
        ("full", NODE, {"id": world.patients["A"][2]}),  # a patient alone
        ("full", NODE, {"id": world.appointments["A"][5]}),  # an appointment alone, moved to another patient later
        ("full", REASON_ONLY, {"id": world.appointments["A"][0]}),  # its patient's only reason, until it is deleted
        ("no-contact", PAGE, {**page, "n": 4}),
        ("other", PAGE, {"p": world.practice_id("B"), **window_args(), "n": 6}),
    ]:
        response = await api.query(world.keys[key], query, variables)
        assert response.status == 200 and response.errors == [], response.body
    with Session(sync_engine) as session:
        access_ids = list(session.scalars(select(AccessRecord.id).order_by(AccessRecord.id)))
        assert session.scalar(select(Disclosure.id).where(Disclosure.patient_field_groups != 0).limit(1))
    until = utcnow() + timedelta(seconds=1)
    shapes = {"one row per appointment": [], "mixed": access_ids[::2], "one row per record": access_ids}
    found: dict[bool, dict[str, Any]] = {}
    for erased in (False, True):
        for shape, rewritten in shapes.items():
            with Session(sync_engine) as session, session.begin():
                as_one_row_per_record(session, rewritten)
                gone = erase(session, world) if erased else set()
                found.setdefault(erased, {})[shape] = answers(session, world, since, until, gone)
                session.rollback()
        assert found[erased]["mixed"] == found[erased]["one row per appointment"] == found[erased]["one row per record"]
    # What the practice deleted or moved since changes nothing of what the partner was shown.
    kept, deleted = found[False]["one row per record"], found[True]["one row per record"]
    assert deleted["partners"] == [as_deleted(report, gone) for report in kept["partners"]]
    remaining = [readers for readers in kept["readers"] if readers.patient_id not in gone]
    assert deleted["readers"] == remaining
    # Not vacuous: the partner's report names its patients, with their groups, and the reason read alone.
    assert {p.field_groups for p in kept["partners"][0].patients} >= {APPOINTMENT | PATIENT | IDENTITY | CONTACT}
    (reason_only,) = [p for p in kept["partners"][0].patients if p.patient_id == world.patients["A"][0]]
    assert reason_only.field_groups & REASON


# --- Encoding and decoding, for all responses -----------------------------------------------------

GROUPS = st.integers(min_value=1, max_value=2**12)


@st.composite
def responses(draw: st.DrawFn) -> Disclosures:
    """Appointments of two practices with their patients, some of the patients disclosed (with any
    groups), and patients disclosed without any appointment of theirs, or with one of another practice."""
    shown = Disclosures()
    patient_ids = st.integers(min_value=1, max_value=12)
    for appointment_id in draw(st.sets(st.integers(min_value=1, max_value=30), max_size=15)):
        practice = draw(st.sampled_from([1, 2]))
        shown.add(shown.appointments, appointment_id, practice, draw(GROUPS))
        shown.patient_of[appointment_id] = draw(patient_ids)
    for patient_id in draw(st.sets(patient_ids, max_size=12)):
        shown.add(shown.patients, patient_id, draw(st.sampled_from([1, 2])), draw(GROUPS))
    return shown


@given(responses())
def test_the_rows_name_exactly_the_records_and_groups_of_the_response(shown: Disclosures):
    rows = shown.rows()
    named = Disclosures.of_rows(rows)
    assert (named.appointments, named.patients) == (shown.appointments, shown.patients)
    # One row per appointment, and one per patient no appointment of theirs (same practice) carries.
    carried = {
        p
        for a, p in shown.patient_of.items()
        if p in shown.patients and shown.patients[p][0] == shown.appointments[a][0]
    }
    assert len(rows) == len(shown.appointments) + len(shown.patients.keys() - carried)
    for row in rows:
        if row["appointment_id"] is not None:  # names its own patient, with the groups sent of them on it, or 0
            assert shown.patient_of[row["appointment_id"]] == row["patient_id"]
            assert row["patient_field_groups"] is not None
            if row["patient_field_groups"]:
                assert row["practice_id"] == shown.patients[row["patient_id"]][0]
        else:
            assert row["patient_field_groups"] is None
    carrying = [row["patient_id"] for row in rows if row["patient_field_groups"] != 0]
    assert sorted(carrying) == sorted(shown.patients)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_sql_reads_back_the_records_and_groups_written(world, sync_engine, data):
    """The same through the database, for any response over the world's records: an appointment's groups
    are `field_groups` of the rows naming it, a patient's `PATIENT_GROUPS` of the rows naming them, and
    `DISCLOSED_GROUPS` all of them."""
    with Session(sync_engine) as session:
        appointments = session.execute(select(Appointment.id, Appointment.practice_id, Appointment.patient_id)).all()
        patients = session.execute(select(Patient.id, Patient.practice_id)).all()
    shown = Disclosures()
    for appointment_id, practice, patient_id in data.draw(st.lists(st.sampled_from(appointments), unique=True)):
        shown.add(shown.appointments, appointment_id, practice, data.draw(GROUPS))
        shown.patient_of[appointment_id] = patient_id
    for patient_id, practice in data.draw(st.lists(st.sampled_from(patients), unique=True)):
        shown.add(shown.patients, patient_id, practice, data.draw(GROUPS))
    rows = shown.rows()
    with Session(sync_engine) as session, session.begin():
        if rows:
            session.execute(insert(Disclosure), [{"access_id": 1, "at": utcnow(), **row} for row in rows])
        of_appointments = session.execute(
            select(Disclosure.appointment_id, Disclosure.practice_id, Disclosure.field_groups).where(
                Disclosure.appointment_id.is_not(None)
            )
        ).all()
        of_patients = session.execute(
            select(Disclosure.patient_id, Disclosure.practice_id, PATIENT_GROUPS).where(
                Disclosure.patient_id.is_not(None), PATIENT_GROUPS != 0  # 0: an appointment's, naming its patient
            )
        ).all()
        everything = list(session.scalars(select(DISCLOSED_GROUPS)))
        session.rollback()
    read_back = Disclosures()
    for records, named in ((read_back.appointments, of_appointments), (read_back.patients, of_patients)):
        for record_id, practice, groups in named:
            read_back.add(records, record_id, practice, groups)
    assert (read_back.appointments, read_back.patients) == (shown.appointments, shown.patients)
    union = 0
    for _, groups in [*shown.appointments.values(), *shown.patients.values()]:
        union |= groups
    assert functools.reduce(operator.or_, everything, 0) == union
