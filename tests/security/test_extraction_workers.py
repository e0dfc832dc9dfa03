"""The distinct-patient limit under concurrency, in production shape: two workers on PostgreSQL,
24 simultaneous pages of one practice on disjoint windows. Recording then counting under READ
COMMITTED let concurrent requests miss each other (53 to 58 patients recorded against 50): the
check is serialized per partner and practice, so not one patient goes over."""

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from api.data.models import Appointment, Gender, Patient, PatientDisclosure, Practice, PracticeMembership
from api.ids import new_public_id
from api.operators import accounts as operators
from api.scopes import Scope
from tests.http.test_workers import serving_two_workers
from tests.world import DAY

LIMIT, REQUESTS, PER_REQUEST = 50, 24, 5
PAGE = """query($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 10) { edges { node { patient { lastName } } } } }"""


@pytest.fixture
def crowded_practice(sync_engine, world) -> str:
    """120 patients, one appointment each, ten minutes apart; `full` may read 50 a day there."""
    with Session(sync_engine) as session, session.begin():
        practice = Practice(name="Cabinet Affluence", address="3 rue du Port, Brest")
        session.add(practice)
        session.flush()
        doctor = session.scalar(select(PracticeMembership.practitioner_id).limit(1))
        session.add(PracticeMembership(practice_id=practice.id, practitioner_id=doctor))
        for i in range(REQUESTS * PER_REQUEST):
            patient = session.execute(insert(Patient).values(
                public_id=new_public_id("Patient"), practice_id=practice.id, first_name="P", last_name=f"N{i}",
                gender=Gender.UNKNOWN,
            ).returning(Patient.id)).scalar_one()
            start = DAY + timedelta(minutes=10 * i)
            session.execute(
                insert(Appointment).values(
                    public_id=new_public_id("Appointment"),
                    practice_id=practice.id,
                    practitioner_id=doctor,
                    patient_id=patient,
                    starts_at=start,
                    ends_at=start + timedelta(minutes=5),
                    change_seq=10_000 + i,
                )
            )
        grant = operators.grant_practice(session, "full", practice.name, set(Scope))
        grant.max_patients_per_window = LIMIT
        return practice.public_id


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_workers_never_record_one_patient_over_the_limit(database_url, world, crowded_practice, sync_engine):
    with serving_two_workers(
        database_url,
        budget_capacity="1000000",
        budget_refill_per_second="100000",
        max_concurrent_requests_per_partner="32",
    ) as base:
        headers = {"Authorization": f"Bearer {world.keys['full']}"}

        async def page(n: int) -> httpx.Response:
            window = {
                "from": (DAY + timedelta(minutes=50 * n - 1)).isoformat(),
                "to": (DAY + timedelta(minutes=50 * n + 49)).isoformat(),
            }
            # A connection each, so that uvicorn spreads them over both workers.
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                return await client.post(
                    "/graphql", json={"query": PAGE, "variables": {"p": crowded_practice, **window}}, headers=headers
                )

        responses = await asyncio.gather(*(page(n) for n in range(REQUESTS)))
    names = {
        edge["node"]["patient"]["lastName"]
        for r in responses
        for edge in ((r.json().get("data") or {}).get("appointments") or {"edges": []})["edges"]
        if edge["node"]["patient"]
    }
    with Session(sync_engine) as session:
        practice_id = session.scalar(select(Practice.id).where(Practice.public_id == crowded_practice))
        recorded = session.scalar(
            select(func.count()).select_from(PatientDisclosure).where(PatientDisclosure.practice_id == practice_id)
        )
    print(f"\n{recorded} patients recorded, {len(names)} names served, against a limit of {LIMIT}")
    assert recorded <= LIMIT and len(names) <= LIMIT
    codes = {e["extensions"]["code"] for r in responses for e in r.json().get("errors", [])}
    assert "EXTRACTION_LIMIT_EXCEEDED" in codes  # the limit was reached: the race was run
