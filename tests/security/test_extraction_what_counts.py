"""What the distinct-patient budget counts, found missing by an outside review with a stolen key: a patient
the partner created, once the practice books them (their file then holds the practice's data), and an
appointment's reason whose patient's record the policy hides (the reason is their health data all the
same). Both were read without a refusal, an alert or a quarantine; the ledger had them."""

import random
import shutil
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from api.data.models import (
    Appointment,
    AppointmentStatus,
    ExtractionAlert,
    Gender,
    Grant,
    KeyMode,
    Patient,
    PatientDisclosure,
    Practice,
    PracticeMembership,
    Practitioner,
)
from api.ids import new_public_id
from api.operators import accounts as operators
from api.operators.policy_release import release_policy
from api.scopes import Scope
from api.timeutil import utcnow
from authz.engine import POLICY_DIR
from tests.compiled.conftest import plan_runs
from tests.security.test_extraction import appointment_row

__all__ = ["plan_runs"]  # the fixture, for the tests below

PATIENTS = 200  # per cohort; the practice's 24 h limit is the floor, 50
EXECUTORS = pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "general-executor"])
PAGE = """query($p: ID!, $from: DateTime!, $to: DateTime!, $after: String) {
  appointments(practiceId: $p, from: $from, to: $to, first: 100, after: $after) {
    edges { node { id SELECTION } } pageInfo { hasNextPage endCursor } } }"""
WITH_PATIENTS = PAGE.replace("SELECTION", "reason patient { id firstName phone }")
REASONS = PAGE.replace("SELECTION", "reason")
CANCEL = (
    'c{i}: cancelAppointment(appointmentId: "{id}") '
    "{{ ... on AppointmentCancelled {{ appointment {{ reason }} }} }}"
)


def practice_with(session: Session, name: str, partner: str, scopes: set[Scope]) -> tuple[Practice, Practitioner]:
    practice = Practice(name=name, address="3 rue du Test, Lyon")
    doctor = Practitioner(first_name="Ana", last_name="Lopez", specialty="psychiatre", rpps="10000000777")
    session.add_all([practice, doctor])
    session.flush()
    session.add(PracticeMembership(practice_id=practice.id, practitioner_id=doctor.id))
    operators.create_partner(session, partner)
    operators.grant_practice(session, partner, name, scopes, horizon=(7, 90))
    return practice, doctor


def appointments_of(
    session: Session, practice: Practice, doctor: Practitioner, patients: list[int], days: int, booker: int | None
) -> None:
    """One appointment each, from `days` ahead over the next 12 days, with a reason; booked by the practice
    (`booker` None) or a partner."""
    rng, now = random.Random(days), utcnow().replace(minute=0, second=0, microsecond=0)
    rows = [
        appointment_row(
            practice.id, doctor.id, patient_id, now + timedelta(days=days, minutes=15 * rng.randrange(0, 12 * 96)),
            15, now, 0, reason="Suivi dépression sévère", source_partner_id=booker, time_set_by_partner_id=booker,
        )
        for patient_id in patients
    ]  # fmt: skip
    session.execute(insert(Appointment), rows)


def new_patients(session: Session, practice: Practice, count: int, creator: int | None) -> list[int]:
    return [
        session.execute(
            insert(Patient)
            .values(public_id=new_public_id("Patient"), practice_id=practice.id, first_name=f"P{i}", last_name="L",
                    gender=Gender.UNKNOWN, phone="+33600000000", source_partner_id=creator)
            .returning(Patient.id)
        ).scalar_one()
        for i in range(count)
    ]  # fmt: skip


async def read_days(api, key: str, practice: str, query: str, first_day: int, days: int = 12) -> tuple[int, set[str]]:
    """Pages the window until refused or done: the reasons read, and the error codes."""
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    window = {"p": practice, "from": (now + timedelta(days=first_day)).isoformat(),
              "to": (now + timedelta(days=first_day + days)).isoformat()}  # fmt: skip
    reasons, codes, after = 0, set(), None
    while True:
        response = await api.query(key, query, {**window, "after": after})
        codes |= response.codes
        if response.data is None:
            return reasons, codes
        page = response.data["appointments"]
        reasons += sum(edge["node"]["reason"] is not None for edge in page["edges"])
        if codes or not page["pageInfo"]["hasNextPage"]:
            return reasons, codes
        after = page["pageInfo"]["endCursor"]


@pytest.fixture
def booker_practice(sync_engine, world) -> str:
    """`booker` created 2 x PATIENTS patients with its bookings: the practice then booked follow-ups for
    the first cohort (days 1 to 13); the second has only the booker's own appointments (days 15 to 27)."""
    with Session(sync_engine) as session, session.begin():
        practice, doctor = practice_with(session, "Cabinet Suivi", "booker", set(Scope))
        booker = operators.find_partner(session, "booker").id
        world.keys["booker"] = operators.issue_partner_key(session, "booker", mode=KeyMode.OPEN).token
        appointments_of(session, practice, doctor, new_patients(session, practice, PATIENTS, booker), 1, None)
        appointments_of(session, practice, doctor, new_patients(session, practice, PATIENTS, booker), 15, booker)
        return practice.public_id


@EXECUTORS
async def test_a_patient_the_partner_created_counts_once_the_practice_books_them(
    make_api, world, booker_practice, sync_engine, compiled
):
    api = make_api(compiled_plans=compiled, budget_capacity=10**7, budget_refill_per_second=10**5)
    own, own_codes = await read_days(api, world.keys["booker"], booker_practice, WITH_PATIENTS, 15)
    assert (own, own_codes) == (PATIENTS, set())  # what it wrote itself: free, however many
    with Session(sync_engine) as session:
        assert session.scalar(select(func.count()).select_from(PatientDisclosure)) == 0
    followed, codes = await read_days(api, world.keys["booker"], booker_practice, WITH_PATIENTS, 1)
    assert codes == {"EXTRACTION_LIMIT_EXCEEDED"} and followed <= 50  # was all 200, names, phones, reasons
    with Session(sync_engine) as session:
        assert session.scalar(select(func.count()).where(ExtractionAlert.kind == "refusal"))


@pytest.fixture
def reasons_practice(sync_engine, world) -> str:
    """2 x PATIENTS patients of the practice's own, each with a practice appointment and its reason, in
    days 1 to 13; `teleconsult` holds appointments:read, reason and write (no identity, as TeleConsult+)."""
    with Session(sync_engine) as session, session.begin():
        scopes = {Scope.APPOINTMENTS_READ, Scope.APPOINTMENTS_REASON, Scope.APPOINTMENTS_WRITE}
        practice, doctor = practice_with(session, "Cabinet Télé", "teleconsult", scopes)
        world.keys["teleconsult"] = operators.issue_partner_key(session, "teleconsult", mode=KeyMode.OPEN).token
        appointments_of(session, practice, doctor, new_patients(session, practice, 2 * PATIENTS, None), 1, None)
        return practice.public_id


# Released policies under which a readable appointment's patient record is hidden: a plausible tightening,
# and a rule hiding every patient.
SHIPPED_RULE = (
    'has_permission(partner: Partner, "read", patient: Patient) if\n    holds(partner, "appointments:read", patient);'
)
HIDING_RULES = {
    "needs identity": SHIPPED_RULE.replace('"appointments:read", patient', '"patients:identity", patient'),
    "no patient": 'has_permission(_partner: Partner, "read", patient: Patient) if\n    patient.practice_id = -1;',
}


@EXECUTORS
@pytest.mark.parametrize("rule", HIDING_RULES.values(), ids=HIDING_RULES.keys())
async def test_a_reason_counts_its_patient_when_the_policy_hides_their_record(
    make_api, world, reasons_practice, sync_engine, tmp_path, compiled, rule, plan_runs
):
    for source in POLICY_DIR.glob("*.polar"):
        shutil.copy(source, tmp_path / source.name)
    policy = tmp_path / "policy.polar"
    assert SHIPPED_RULE in policy.read_text()
    policy.write_text(policy.read_text().replace(SHIPPED_RULE, rule))
    assert release_policy(sync_engine, tmp_path).report.ok
    api = make_api(compiled_plans=compiled, policy_dir=tmp_path, budget_capacity=10**7, budget_refill_per_second=10**5)
    reasons, codes = await read_days(api, world.keys["teleconsult"], reasons_practice, REASONS, 1)
    assert codes == {"EXTRACTION_LIMIT_EXCEEDED"} and reasons <= 50  # was all 400, no alert
    assert bool(plan_runs["page"]) == compiled  # each executor, as parametrized


async def test_cancelling_a_cancelled_appointment_counts_the_patient_of_its_reason(
    make_api, world, reasons_practice, sync_engine
):
    # A grant of write and reason without read: the patient's record is hidden by the shipped policy, and a
    # cancellation of an appointment already cancelled answers it (reason included), changing nothing.
    with Session(sync_engine) as session, session.begin():
        practice = session.scalar(select(Practice.id).where(Practice.public_id == reasons_practice))
        session.execute(update(Grant).where(Grant.practice_id == practice).values(appointments_read=False))
        at_practice = Appointment.practice_id == practice
        session.execute(update(Appointment).where(at_practice).values(status=AppointmentStatus.CANCELLED))
        ids = list(session.scalars(select(Appointment.public_id).where(at_practice).order_by(Appointment.id)))
    api = make_api(budget_capacity=10**7, budget_refill_per_second=10**5)
    reasons, codes = 0, set()
    for chunk in range(0, len(ids), 20):
        aliases = " ".join(CANCEL.format(i=i, id=a) for i, a in enumerate(ids[chunk : chunk + 20]))
        response = await api.query(world.keys["teleconsult"], f"mutation {{ {aliases} }}")
        codes |= response.codes
        reasons += sum(1 for v in (response.data or {}).values() if v and v["appointment"]["reason"])
        if codes:
            break
    assert codes == {"EXTRACTION_LIMIT_EXCEEDED"} and reasons <= 50  # was all 400


@EXECUTORS
@pytest.mark.parametrize(("visible", "hidden"), [(30, 40), (60, 10)])
async def test_patients_shown_and_hidden_at_one_practice_are_admitted_together(
    make_api, world, sync_engine, tmp_path, compiled, plan_runs, visible, hidden
):
    # A rule hiding some of a practice's patients: the resolvers admitted the visible ones and the hidden
    # ones in two batches (reasons served then refused, or the refusal told twice), the compiled page in one.
    with Session(sync_engine) as session, session.begin():
        practice, doctor = practice_with(session, "Cabinet Mixte", "mixed", set(Scope))
        world.keys["mixed"] = operators.issue_partner_key(session, "mixed", mode=KeyMode.OPEN).token
        operators.set_quarantine_on_refusal(session, "mixed", False)  # a second refusal would be told again
        shown = new_patients(session, practice, visible, None)
        appointments_of(session, practice, doctor, shown + new_patients(session, practice, hidden, None), 1, None)
        practice_id = practice.public_id
    for source in POLICY_DIR.glob("*.polar"):
        shutil.copy(source, tmp_path / source.name)
    policy = tmp_path / "policy.polar"
    partly_hidden = SHIPPED_RULE[:-1] + f" and\n    patient.id <= {max(shown)};"
    policy.write_text(policy.read_text().replace(SHIPPED_RULE, partly_hidden))
    assert release_policy(sync_engine, tmp_path).report.ok
    api = make_api(compiled_plans=compiled, policy_dir=tmp_path, budget_capacity=10**7, budget_refill_per_second=10**5)
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    window = {"from": (now + timedelta(days=1)).isoformat(), "to": (now + timedelta(days=13)).isoformat()}
    response = await api.query(world.keys["mixed"], REASONS, {"p": practice_id, **window, "after": None})
    edges = response.data["appointments"]["edges"]
    assert len(edges) == visible + hidden and not any(edge["node"]["reason"] for edge in edges)
    assert [error["extensions"]["code"] for error in response.errors] == ["EXTRACTION_LIMIT_EXCEEDED"]
    assert bool(plan_runs["page"]) == compiled
