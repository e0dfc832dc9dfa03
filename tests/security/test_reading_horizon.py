"""Purpose-bound reads: a key reads who a patient is only near today (its grant's reading horizon),
for patients the practice itself booked there, unless the practice opened history for a while."""

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from api.data.models import (
    Appointment,
    AppointmentStatus,
    Disclosure,
    Gender,
    Grant,
    Partner,
    Patient,
    Practice,
    PracticeActivity,
)
from api.ledger.access import FieldGroup
from api.ledger.exposure import partner_exposure
from api.operators import accounts as operators
from api.protection.activity import weekly_patients
from api.settings import Settings
from api.timeutil import utcnow
from tests.ledger.rows import groups_per_record
from tests.world import window_args

PAST_PAGE = """query($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 50) {
    edges { node { id startsAt endsAt status reason patient { id firstName lastName phone email } } } } }"""
PATIENT_NODE = (
    """query($id: ID!) { node(id: $id) { id ... on Patient { firstName lastName birthDate phone email } } }"""
)
PATIENT_NODES = """query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Patient { firstName phone } } }"""
BOOK = """mutation($input: BookAppointmentInput!) { bookAppointment(input: $input) {
  ... on AppointmentBooked { appointment { id reason patient { id firstName phone } } }
  ... on WriteRefused { reason } } }"""
VIEWER = "{ viewer { grants { practiceName daysBack daysAhead historyUntil } } }"
SECRETS = ("Ancienne", "Oubliée", "+33699000000", "ancienne@example.fr", "Motif ancien")


def add_patient_of_a(
    session: Session, who: tuple[str, str, str, str, str], status: AppointmentStatus, slots: list[tuple[datetime, int]]
) -> tuple[Patient, list[Appointment]]:
    """A new patient of practice A as `who` tells (first name, last name, phone, email, reason), with
    an appointment of `status` with one of A's practitioners at each (start, change_seq) of `slots`."""
    first_name, last_name, phone, email, reason = who
    practice = session.scalar(select(Practice).where(Practice.name == "A"))
    patient = Patient(
        practice_id=practice.id,
        first_name=first_name,
        last_name=last_name,
        gender=Gender.FEMALE,
        phone=phone,
        email=email,
    )
    session.add(patient)
    session.flush()
    practitioner_id = session.scalar(select(Appointment.practitioner_id).where(Appointment.practice_id == practice.id))
    appointments = [
        Appointment(
            practice_id=practice.id,
            practitioner_id=practitioner_id,
            patient_id=patient.id,
            starts_at=starts,
            ends_at=starts + timedelta(minutes=20),
            status=status,
            reason=reason,
            change_seq=change_seq,
        )
        for starts, change_seq in slots
    ]
    session.add_all(appointments)
    session.flush()
    return patient, appointments


@pytest.fixture
def former_patient(sync_engine, world) -> str:
    """A patient of practice A seen by the practice two months ago, and never since."""
    now = utcnow()
    slots = [
        ((now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0), 1000 + days) for days in (60, 45, 40)
    ]
    with Session(sync_engine) as session, session.begin():
        patient, _ = add_patient_of_a(session, SECRETS, AppointmentStatus.FULFILLED, slots)
        return patient.public_id


def text(response) -> str:
    return json.dumps(response.body, ensure_ascii=False)


def past_month() -> dict[str, str]:
    now = utcnow()
    return {"from": (now - timedelta(days=62)).isoformat(), "to": (now - timedelta(days=32)).isoformat()}


def forbidden_paths(response) -> set[str]:
    return {str(e["path"][-1]) for e in response.errors if e["extensions"]["code"] == "FORBIDDEN"}


def set_history(sync_engine, partner: str, practice: str, until) -> None:
    """Straight in the table: the CLI refuses a permission that ends in the past."""
    with Session(sync_engine) as session, session.begin():
        partner_id = session.scalar(select(Partner.id).where(Partner.name == partner))
        practice_id = session.scalar(select(Practice.id).where(Practice.name == practice))
        session.execute(
            update(Grant)
            .where(Grant.partner_id == partner_id, Grant.practice_id == practice_id)
            .values(history_until=until)
        )


async def test_paging_a_past_month_shows_times_and_status_but_not_who_the_patient_is(api, world, former_patient):
    response = await api.query(world.keys["full"], PAST_PAGE, {"p": world.practice_id("A"), **past_month()})
    edges = response.data["appointments"]["edges"]
    assert len(edges) == 3
    for edge in edges:
        node = edge["node"]
        assert node["startsAt"] and node["endsAt"] and node["status"] == "FULFILLED"
        assert node["patient"]["id"] == former_patient
        assert node["reason"] is None
        assert {k: v for k, v in node["patient"].items() if k != "id"} == dict.fromkeys(
            ["firstName", "lastName", "phone", "email"]
        )
    assert forbidden_paths(response) == {"reason", "firstName", "lastName", "phone", "email"}
    assert not any(secret in text(response) for secret in SECRETS)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "resolvers"])
async def test_a_forbidden_field_says_whether_the_horizon_or_the_grant_withholds_it(
    make_api, world, former_patient, compiled
):
    """A partner holding the scope is told the record is outside its horizon (it would ask for the scope
    it has otherwise); one without it, that its grant lacks it. Both executors alike."""
    api = make_api(compiled_plans=compiled)
    past = await api.query(world.keys["full"], PAST_PAGE, {"p": world.practice_id("A"), **past_month()})
    reasons = {
        e["path"][-1]: e["extensions"].get("reason") for e in past.errors if e["extensions"]["code"] == "FORBIDDEN"
    }
    assert reasons == dict.fromkeys(["reason", "firstName", "lastName", "phone", "email"], "OUTSIDE_READING_HORIZON")
    assert all("reading horizon" in e["message"] for e in past.errors)
    page = PAST_PAGE.replace("reason", "")
    today = await api.query(world.keys["no-contact"], page, {"p": world.practice_id("A"), **window_args()})
    lacking = [e for e in today.errors if e["path"][-1] in ("phone", "email")]
    assert lacking and all("reason" not in e["extensions"] for e in lacking)
    assert all("does not allow" in e["message"] for e in lacking)


async def test_node_and_nodes_on_a_patient_without_an_appointment_in_the_horizon_forbid_identity_and_contact(
    api, world, former_patient
):
    single = await api.query(world.keys["full"], PATIENT_NODE, {"id": former_patient})
    assert single.data["node"] == {
        "id": former_patient,
        "firstName": None,
        "lastName": None,
        "birthDate": None,
        "phone": None,
        "email": None,
    }
    assert forbidden_paths(single) == {"firstName", "lastName", "birthDate", "phone", "email"}
    current = world.patients["A"][0]  # has an appointment in two weeks, booked by the practice
    several = await api.query(world.keys["full"], PATIENT_NODES, {"ids": [former_patient, current]})
    assert several.data["nodes"][0] == {"id": former_patient, "firstName": None, "phone": None}
    assert several.data["nodes"][1]["firstName"] == "PrénomA0" and several.data["nodes"][1]["phone"]
    assert {tuple(e["path"]) for e in several.errors} == {("nodes", 0, "firstName"), ("nodes", 0, "phone")}
    assert not any(secret in text(single) + text(several) for secret in SECRETS)


async def test_booking_for_an_existing_patient_then_reading_it_gives_nothing_more(api, world, former_patient):
    starts = (utcnow() + timedelta(days=3)).replace(hour=7, minute=0, second=0, microsecond=0)
    booking = {
        "practiceId": world.practice_id("A"),
        "practitionerId": world.practitioners["A"][0],
        "patientId": former_patient,
        "startsAt": starts.isoformat(),
        "endsAt": (starts + timedelta(minutes=15)).isoformat(),
        "reason": "Prétexte",
    }
    booked = await api.query(world.keys["full"], BOOK, {"input": booking})
    appointment = booked.data["bookAppointment"]["appointment"]
    assert appointment["reason"] == "Prétexte"  # its own appointment, inside the horizon
    assert appointment["patient"] == {"id": former_patient, "firstName": None, "phone": None}
    for query, variables in (
        (PATIENT_NODE, {"id": former_patient}),
        (PAST_PAGE, {"p": world.practice_id("A"), **past_month()}),
    ):
        response = await api.query(world.keys["full"], query, variables)
        assert not any(secret in text(response) for secret in SECRETS)
        assert "firstName" in forbidden_paths(response)


async def test_a_patient_the_partner_created_is_read_back_inside_the_horizon_only(api, world, sync_engine):
    starts = (utcnow() + timedelta(days=2)).replace(hour=7, minute=0, second=0, microsecond=0)
    booking = {
        "practiceId": world.practice_id("A"),
        "practitionerId": world.practitioners["A"][0],
        "newPatient": {"firstName": "Nouveau", "lastName": "Venu", "gender": "MALE", "phone": "+33611111111"},
        "startsAt": starts.isoformat(),
        "endsAt": (starts + timedelta(minutes=15)).isoformat(),
    }
    booked = await api.query(world.keys["full"], BOOK, {"input": booking})
    patient = booked.data["bookAppointment"]["appointment"]["patient"]
    assert patient["firstName"] == "Nouveau" and patient["phone"] == "+33611111111"
    with Session(sync_engine) as session, session.begin():  # the visit is long past now
        session.execute(
            update(Appointment)
            .where(Appointment.public_id == booked.data["bookAppointment"]["appointment"]["id"])
            .values(
                starts_at=utcnow() - timedelta(days=50), ends_at=utcnow() - timedelta(days=50) + timedelta(minutes=15)
            )
        )
    later = await api.query(world.keys["full"], PATIENT_NODE, {"id": patient["id"]})
    assert later.data["node"]["firstName"] is None and "Nouveau" not in text(later)


async def test_the_history_permission_opens_the_past_until_it_ends_and_is_marked_in_the_ledger(
    api, world, former_patient, sync_engine
):
    variables = {"p": world.practice_id("A"), **past_month()}
    with Session(sync_engine) as session, session.begin():
        operators.allow_history(session, "full", "A", utcnow() + timedelta(hours=1))
    opened = await api.query(world.keys["full"], PAST_PAGE, variables)
    assert opened.errors == []
    assert {edge["node"]["patient"]["lastName"] for edge in opened.data["appointments"]["edges"]} == {"Oubliée"}
    assert {edge["node"]["reason"] for edge in opened.data["appointments"]["edges"]} == {"Motif ancien"}
    viewer = await api.query(world.keys["full"], VIEWER)
    assert viewer.data["viewer"]["grants"][0]["historyUntil"] is not None

    with Session(sync_engine) as session:
        groups = groups_per_record(session)
        report = partner_exposure(session, "full", utcnow() - timedelta(hours=1), utcnow() + timedelta(minutes=1))
    assert groups == {
        FieldGroup.APPOINTMENT | FieldGroup.REASON | FieldGroup.HISTORY,
        FieldGroup.PATIENT | FieldGroup.IDENTITY | FieldGroup.CONTACT | FieldGroup.HISTORY,
    }
    (practice,) = report.practices
    assert practice.with_groups["history"] == 1 and practice.with_groups["identity"] == 1
    assert all(p.field_groups & FieldGroup.HISTORY for p in report.patients)

    set_history(sync_engine, "full", "A", utcnow() - timedelta(seconds=1))  # it ended
    ended = await api.query(world.keys["full"], PAST_PAGE, variables)
    assert not any(secret in text(ended) for secret in SECRETS)
    assert (await api.query(world.keys["full"], VIEWER)).data["viewer"]["grants"][0]["historyUntil"] is None

    with Session(sync_engine) as session, session.begin():
        operators.allow_history(session, "full", "A", utcnow() + timedelta(hours=1))
        operators.allow_history(session, "full", "A", None)  # withdrawn
    withdrawn = await api.query(world.keys["full"], PAST_PAGE, variables)
    assert not any(secret in text(withdrawn) for secret in SECRETS)


async def test_a_disclosure_inside_the_horizon_is_not_marked_history(api, world, sync_engine):
    with Session(sync_engine) as session, session.begin():
        operators.allow_history(session, "full", "A", utcnow() + timedelta(hours=1))
    response = await api.query(world.keys["full"], PATIENT_NODE, {"id": world.patients["A"][0]})
    assert response.data["node"]["firstName"] == "PrénomA0"
    with Session(sync_engine) as session:
        (groups,) = session.scalars(select(Disclosure.field_groups)).all()
    assert groups == FieldGroup.PATIENT | FieldGroup.IDENTITY | FieldGroup.CONTACT


async def test_a_narrower_horizon_counts_from_the_next_request_and_shows_in_viewer(api, world, sync_engine):
    first = await api.query(world.keys["full"], PATIENT_NODE, {"id": world.patients["A"][0]})
    assert first.data["node"]["firstName"] == "PrénomA0"  # its appointment is in two weeks
    with Session(sync_engine) as session, session.begin():
        operators.change_grant(session, "full", "A", days_back=0, days_ahead=7)
    narrowed = await api.query(world.keys["full"], PATIENT_NODE, {"id": world.patients["A"][0]})
    assert narrowed.data["node"]["firstName"] is None and "PrénomA0" not in text(narrowed)
    viewer = await api.query(world.keys["full"], VIEWER)
    assert viewer.data["viewer"]["grants"] == [
        {"practiceName": "A", "daysBack": 0, "daysAhead": 7, "historyUntil": None}
    ]


async def test_the_history_permission_cannot_be_set_in_the_past_nor_past_the_grant(world, sync_engine):
    with Session(sync_engine) as session:
        with pytest.raises(operators.OperatorError, match="future"):
            operators.allow_history(session, "full", "A", utcnow() - timedelta(minutes=1))
        with pytest.raises(operators.OperatorError, match="outlast"):
            operators.allow_history(session, "full", "A", utcnow() + timedelta(days=800))
        with pytest.raises(operators.OperatorError, match="days-back"):
            operators.change_grant(session, "full", "A", days_back=-1)


RESCHEDULE = """mutation($input: RescheduleAppointmentInput!) { rescheduleAppointment(input: $input) {
  __typename
  ... on AppointmentRescheduled { appointment { id startsAt reason patient { id firstName lastName phone email } } }
  ... on WriteRefused { reason } } }"""
APPOINTMENT_NODE = (
    """query($id: ID!) { node(id: $id) { id ... on Appointment { startsAt reason patient { id firstName phone } } } }"""
)
DISTANT = ("Lointaine", "Éloignée", "+33688000000", "lointaine@example.fr", "Motif lointain")


@pytest.fixture
def distant_appointment(sync_engine, world) -> tuple[str, str, object]:
    """A practice-made appointment of practice A four months ahead, for a patient with no other:
    (appointment id, patient id, its start)."""
    starts = (utcnow() + timedelta(days=120)).replace(hour=4, minute=10, second=0, microsecond=0)
    with Session(sync_engine) as session, session.begin():
        patient, (appointment,) = add_patient_of_a(session, DISTANT, AppointmentStatus.BOOKED, [(starts, 2000)])
        return appointment.public_id, patient.public_id, starts


def move(appointment_id: str, starts) -> dict[str, dict[str, str]]:
    return {
        "input": {
            "appointmentId": appointment_id,
            "startsAt": starts.isoformat(),
            "endsAt": (starts + timedelta(minutes=20)).isoformat(),
        }
    }


async def test_rescheduling_a_practice_appointment_into_the_horizon_opens_neither_its_reason_nor_its_patient(
    api, world, distant_appointment
):
    appointment_id, patient_id, _ = distant_appointment
    soon = (utcnow() + timedelta(days=3)).replace(hour=4, minute=10, second=0, microsecond=0)
    moved = await api.query(world.keys["full"], RESCHEDULE, move(appointment_id, soon))
    payload = moved.data["rescheduleAppointment"]
    assert payload["__typename"] == "AppointmentRescheduled"
    assert payload["appointment"]["reason"] is None
    assert payload["appointment"]["patient"] == {
        "id": patient_id,
        "firstName": None,
        "lastName": None,
        "phone": None,
        "email": None,
    }
    assert forbidden_paths(moved) == {"reason", "firstName", "lastName", "phone", "email"}
    through_node = await api.query(world.keys["full"], APPOINTMENT_NODE, {"id": appointment_id})
    assert through_node.data["node"]["reason"] is None and through_node.data["node"]["patient"]["firstName"] is None
    patient_node = await api.query(world.keys["full"], PATIENT_NODE, {"id": patient_id})
    assert patient_node.data["node"]["firstName"] is None
    assert forbidden_paths(through_node) == {"reason", "firstName", "phone"}
    assert not any(secret in text(r) for r in (moved, through_node, patient_node) for secret in DISTANT)


async def test_rescheduling_there_and_back_leaves_nothing_opened_in_the_ledger(
    api, world, distant_appointment, sync_engine
):
    appointment_id, patient_id, starts = distant_appointment
    soon = (utcnow() + timedelta(days=3)).replace(hour=4, minute=10, second=0, microsecond=0)
    for when in (soon, starts):
        moved = await api.query(world.keys["full"], RESCHEDULE, move(appointment_id, when))
        assert moved.data["rescheduleAppointment"]["__typename"] == "AppointmentRescheduled"
    for query, variables in ((APPOINTMENT_NODE, {"id": appointment_id}), (PATIENT_NODE, {"id": patient_id})):
        response = await api.query(world.keys["full"], query, variables)
        assert not any(secret in text(response) for secret in DISTANT)
    with Session(sync_engine) as session:
        groups = groups_per_record(session)
    assert groups and not any(g & (FieldGroup.IDENTITY | FieldGroup.CONTACT | FieldGroup.REASON) for g in groups)


async def test_a_partners_own_booking_rescheduled_stays_readable_inside_the_horizon(api, world):
    starts = (utcnow() + timedelta(days=2)).replace(hour=4, minute=40, second=0, microsecond=0)
    booking = {
        "practiceId": world.practice_id("A"),
        "practitionerId": world.practitioners["A"][0],
        "reason": "Contrôle",
        "newPatient": {"firstName": "Propre", "lastName": "Client", "gender": "MALE", "phone": "+33622222222"},
        "startsAt": starts.isoformat(),
        "endsAt": (starts + timedelta(minutes=20)).isoformat(),
    }
    booked = await api.query(world.keys["full"], BOOK, {"input": booking})
    moved = await api.query(
        world.keys["full"],
        RESCHEDULE,
        move(booked.data["bookAppointment"]["appointment"]["id"], starts + timedelta(days=1)),
    )
    appointment = moved.data["rescheduleAppointment"]["appointment"]
    assert appointment["reason"] == "Contrôle" and appointment["patient"]["firstName"] == "Propre"
    assert moved.errors == []


async def test_rescheduling_into_the_coming_week_does_not_move_the_practice_baseline(
    world, distant_appointment, api, database_url, async_engine
):
    appointment_id, _, _ = distant_appointment
    settings = Settings(
        database_url=database_url,
        secret_key="test-secret",
        extraction_baseline_weeks_back=0,
        extraction_baseline_weeks_ahead=1,
    )
    now = utcnow()

    async def baseline() -> int:
        async with AsyncSession(async_engine) as session, session.begin():  # measured afresh, not the stored value
            await session.execute(delete(PracticeActivity))
            return await weekly_patients(session, settings, world.practices["A"].id, now)

    before = await baseline()
    soon = (now + timedelta(days=3)).replace(hour=4, minute=10, second=0, microsecond=0)
    moved = await api.query(world.keys["full"], RESCHEDULE, move(appointment_id, soon))
    assert moved.data["rescheduleAppointment"]["__typename"] == "AppointmentRescheduled"
    assert await baseline() == before


TWICE = """mutation($first: RescheduleAppointmentInput!, $second: RescheduleAppointmentInput!) {
  r1: rescheduleAppointment(input: $first) { ... on AppointmentRescheduled { appointment { id } } }
  r2: rescheduleAppointment(input: $second) { ... on AppointmentRescheduled { appointment { id reason } } } }"""


async def own_booking(api, world) -> str:
    """An appointment the partner booked itself, with a reason, two days ahead."""
    starts = (utcnow() + timedelta(days=2)).replace(hour=5, minute=20, second=0, microsecond=0)
    booked = await api.query(
        world.keys["full"],
        BOOK,
        {
            "input": {
                "practiceId": world.practice_id("A"),
                "practitionerId": world.practitioners["A"][0],
                "reason": "Suivi",
                "newPatient": {"firstName": "Double", "lastName": "Déplacement", "gender": "FEMALE"},
                "startsAt": starts.isoformat(),
                "endsAt": (starts + timedelta(minutes=20)).isoformat(),
            }
        },
    )
    return booked.data["bookAppointment"]["appointment"]["id"]


def last_disclosure_of(sync_engine, appointment_id: str) -> FieldGroup:
    with Session(sync_engine) as session:
        return FieldGroup(
            session.scalars(
                select(Disclosure.field_groups)
                .join(Appointment, Disclosure.appointment_id == Appointment.id)
                .where(Appointment.public_id == appointment_id)
                .order_by(Disclosure.id.desc())
            ).first()
        )


def days_ahead(days: int) -> datetime:
    return (utcnow() + timedelta(days=days)).replace(hour=5, minute=20, second=0, microsecond=0)


async def reschedule_twice_then_read_the_reason(api, world, appointment_id: str, first, second) -> None:
    """One document moves the appointment to `first`, then to `second`, reading its reason there."""
    moves = {"first": move(appointment_id, first)["input"], "second": move(appointment_id, second)["input"]}
    response = await api.query(world.keys["full"], TWICE, moves)
    assert response.errors == [] and response.data["r2"]["appointment"]["reason"] == "Suivi"


async def test_a_reason_read_inside_the_horizon_is_not_marked_history_because_the_record_was_first_built_outside(
    api, world, sync_engine
):
    appointment_id = await own_booking(api, world)
    await reschedule_twice_then_read_the_reason(api, world, appointment_id, days_ahead(120), days_ahead(3))
    assert last_disclosure_of(sync_engine, appointment_id) == FieldGroup.APPOINTMENT | FieldGroup.REASON


async def test_a_reason_read_outside_the_horizon_through_history_is_marked_even_after_a_build_inside(
    api, world, sync_engine
):
    appointment_id = await own_booking(api, world)
    with Session(sync_engine) as session, session.begin():
        operators.allow_history(session, "full", "A", utcnow() + timedelta(hours=1))
    await reschedule_twice_then_read_the_reason(api, world, appointment_id, days_ahead(3), days_ahead(120))
    assert (
        last_disclosure_of(sync_engine, appointment_id)
        == FieldGroup.APPOINTMENT | FieldGroup.REASON | FieldGroup.HISTORY
    )
