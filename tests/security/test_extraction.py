"""The 2020 scenario: a key pages through a practice's whole file. It must be stopped early,
recorded as an alert, while a normal day of sync for the same practice is never refused."""

import random
from datetime import timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from api.operators import accounts as operators
from api.ids import new_public_id
from api.data.models import Appointment, ExtractionAlert, Gender, Patient, Practice, PracticeMembership, Practitioner
from api.scopes import Scope
from api.timeutil import utcnow

PATIENTS, APPOINTMENTS, SPAN_DAYS = 1000, 3000, 180
PAGE = """query($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!, $after: String) {
  appointments(practiceId: $p, from: $from, to: $to, first: $n, after: $after) {
    edges { node { startsAt patient { id firstName lastName phone email } } }
    pageInfo { hasNextPage endCursor } } }"""


@pytest.fixture
def big_practice(sync_engine, world) -> str:
    """A practice with 1,000 patients and 3,000 appointments over a year around today."""
    rng = random.Random(2020)
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    with Session(sync_engine) as session, session.begin():
        practice = Practice(name="Grand Cabinet", address="2 avenue du Port, Marseille")
        doctor = Practitioner(first_name="Inès", last_name="Roux", specialty="pédiatre", rpps="10000000099")
        session.add_all([practice, doctor])
        session.flush()
        session.add(PracticeMembership(practice_id=practice.id, practitioner_id=doctor.id))
        patient_ids = [
            session.execute(
                insert(Patient).values(
                    public_id=new_public_id("Patient"), practice_id=practice.id, first_name=f"P{i}", last_name=f"N{i}",
                    gender=Gender.UNKNOWN, phone=f"+33700{i:06d}", email=f"p{i}@example.fr", created_at=now,
                ).returning(Patient.id)
            ).scalar_one()
            for i in range(PATIENTS)
        ]
        rows = []
        for i in range(APPOINTMENTS):
            start = now + timedelta(minutes=15 * rng.randrange(-SPAN_DAYS * 96, SPAN_DAYS * 96))
            rows.append(dict(
                public_id=new_public_id("Appointment"), practice_id=practice.id, practitioner_id=doctor.id,
                patient_id=rng.choice(patient_ids), starts_at=start, ends_at=start + timedelta(minutes=15),
                created_at=now, updated_at=now, change_seq=1000 + i,
            ))
        session.execute(insert(Appointment), rows)
        for partner in ("extractor", "daily-sync"):
            operators.create_partner(session, partner)
            world.keys[partner] = operators.issue_partner_key(session, partner).token
            operators.grant_practice(session, partner, "Grand Cabinet", set(Scope))
        # The extractor may read history: this file tests the distinct-patient limit on its own
        # (tests/security/test_reading_horizon.py tests the horizon).
        operators.allow_history(session, "extractor", "Grand Cabinet", now + timedelta(days=1))
        return practice.public_id


async def read_window(api, key, practice_id, start, end, page_size=50):
    """All pages of a window; returns (patient ids seen, refusal code or None)."""
    seen, after = set(), None
    variables = {"p": practice_id, "from": start.isoformat(), "to": end.isoformat(), "n": page_size}
    while True:
        response = await api.query(key, PAGE, {**variables, "after": after})
        if response.errors:
            return seen, sorted(response.codes)[0]
        page = response.data["appointments"]
        seen |= {edge["node"]["patient"]["id"] for edge in page["edges"]}
        if not page["pageInfo"]["hasNextPage"]:
            return seen, None
        after = page["pageInfo"]["endCursor"]


async def test_paging_through_the_whole_file_is_stopped_early_and_alerted(make_api, world, big_practice, sync_engine):
    api = make_api(budget_capacity=10**6, budget_refill_per_second=10**4)  # isolate the extraction defence
    start, obtained, refusal = utcnow() - timedelta(days=SPAN_DAYS), set(), None
    while refusal is None and start < utcnow() + timedelta(days=SPAN_DAYS):
        # Small pages: the most a refusal-aware extractor can get before the limit.
        seen, refusal = await read_window(api, world.keys["extractor"], big_practice, start, start + timedelta(days=31), 10)
        obtained |= seen
        start += timedelta(days=31)
    assert refusal == "EXTRACTION_LIMIT_EXCEEDED"
    print(f"\nextraction stopped after {len(obtained)} distinct patients of {PATIENTS}")
    assert len(obtained) <= PATIENTS // 5
    with Session(sync_engine) as session:
        alerts = session.scalars(select(ExtractionAlert)).all()
    assert len(alerts) >= 1
    assert alerts[0].patients_in_window + alerts[0].patients_refused > alerts[0].threshold
    assert alerts[0].patients_in_window <= alerts[0].threshold


async def test_a_normal_day_of_sync_is_never_refused(make_api, world, big_practice):
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)

    async def sync_round(api):
        # What a practice-management software reads: today and the coming week.
        for day in range(7):
            start = today + timedelta(days=day)
            _, refusal = await read_window(api, world.keys["daily-sync"], big_practice, start, start + timedelta(days=1))
            assert refusal is None

    await sync_round(make_api())  # one round fits the default budget
    # Then hourly rounds through a working day; the hour between rounds refills the budget,
    # which the test compresses with a fast refill. The distinct-patient budget is untouched.
    hourly = make_api(budget_refill_per_second=10**4)
    for _ in range(10):
        await sync_round(hourly)
