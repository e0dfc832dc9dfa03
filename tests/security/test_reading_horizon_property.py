"""Property: for any appointment time, who booked it, grant horizon and history permission, a
patient's identity and an appointment's reason are returned iff the reading-horizon rule says so."""

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from api.data.models import Appointment, Grant, Partner, Patient, Practice
from api.timeutil import utcnow

QUERY = """query($patient: ID!, $appointment: ID!) {
  patient: node(id: $patient) { ... on Patient { firstName } }
  appointment: node(id: $appointment) { ... on Appointment { reason startsAt } } }"""


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    # Half days: no start within hours of a bound, so the seconds between setting and asking never matter.
    starts_in_half_days=st.integers(-200, 200).map(lambda n: n + 0.5),
    days_back=st.integers(0, 60),
    days_ahead=st.integers(0, 60),
    booked_by=st.sampled_from(["practice", "this partner", "another partner"]),
    history=st.sampled_from([None, "live", "ended"]),
)
async def test_identity_and_reason_are_returned_iff_the_horizon_rule_says_so(
    api, world, sync_engine, starts_in_half_days, days_back, days_ahead, booked_by, history
):
    now = utcnow()
    starts = now + timedelta(days=starts_in_half_days / 2)
    with Session(sync_engine) as session, session.begin():
        me = session.scalar(select(Partner.id).where(Partner.name == "full"))
        other = session.scalar(select(Partner.id).where(Partner.name == "other"))
        practice = session.scalar(select(Practice.id).where(Practice.name == "A"))
        patient = session.scalar(select(Patient).where(Patient.public_id == world.patients["A"][0]))
        # The patient keeps exactly one appointment: the one under test.
        session.execute(
            delete(Appointment).where(
                Appointment.patient_id == patient.id, Appointment.public_id != world.appointments["A"][0]
            )
        )
        source = {"practice": None, "this partner": me, "another partner": other}[booked_by]
        session.execute(
            update(Appointment)
            .where(Appointment.public_id == world.appointments["A"][0])
            .values(
                starts_at=starts,
                ends_at=starts + timedelta(minutes=20),
                source_partner_id=source,
                patient_id=patient.id,
            )
        )
        until = {None: None, "live": now + timedelta(hours=1), "ended": now - timedelta(hours=1)}[history]
        session.execute(
            update(Grant)
            .where(Grant.partner_id == me, Grant.practice_id == practice)
            .values(
                days_back=days_back,
                days_ahead=days_ahead,
                history_until=until,
            )
        )

    response = await api.query(
        world.keys["full"], QUERY, {"patient": world.patients["A"][0], "appointment": world.appointments["A"][0]}
    )

    offset_days = starts_in_half_days / 2
    inside = -days_back <= offset_days < days_ahead
    history_open = history == "live"
    assert response.data["appointment"]["startsAt"] is not None  # times stay readable either way
    assert (response.data["appointment"]["reason"] is not None) == (inside or history_open), response.body
    # The patient counts only through the practice's own booking (this partner did not create the patient).
    patient_inside = inside and booked_by == "practice"
    assert (response.data["patient"]["firstName"] is not None) == (patient_inside or history_open), response.body
    assert all(e["extensions"]["code"] == "FORBIDDEN" for e in response.errors)
