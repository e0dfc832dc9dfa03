"""The change limit: a stolen key with appointments:write used to cancel a practice's whole agenda,
ten points a write, with no alert. The appointments a partner changes that it did not book are
counted per practice and day against a limit sized from the practice's activity: warned of, then
refused (nothing changed) and the key quarantined; the partner's own bookings never count."""

import asyncio
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.data.models import AlertKind, Appointment, AppointmentStatus, ExtractionAlert, Grant, PartnerChange, Practice
from api.timeutil import utcnow
from tests.security.test_extraction import big_practice  # noqa: F401  # the fixture: 1,000 patients, 3,000 appointments
from tests.services.test_writes_and_sync import BOOK, FREE, RESCHEDULE, booking

CANCEL = """mutation($id: ID!) { cancelAppointment(appointmentId: $id) {
  __typename ... on AppointmentCancelled { appointment { status } } ... on WriteRefused { reason } } }"""
LIMIT = 20  # the floor: the big practice's weekly patients (about 60) times 0.25 is less


def practice_bookings(sync_engine, practice_id: str, count: int) -> list[str]:
    """Booked appointments of the practice's own, ahead."""
    with Session(sync_engine) as session:
        return list(
            session.scalars(
                select(Appointment.public_id)
                .join(Practice, Practice.id == Appointment.practice_id)
                .where(
                    Practice.public_id == practice_id,
                    Appointment.source_partner_id.is_(None),
                    Appointment.status == AppointmentStatus.BOOKED,
                    Appointment.starts_at > utcnow() + timedelta(hours=2),
                )
                .order_by(Appointment.starts_at)
                .limit(count)
            )
        )


def status_of(sync_engine, public_id: str) -> AppointmentStatus:
    with Session(sync_engine) as session:
        return session.scalar(select(Appointment.status).where(Appointment.public_id == public_id))


def alerts(sync_engine) -> list[tuple[AlertKind, float | None]]:
    with Session(sync_engine) as session:
        return [(a.kind, a.fraction) for a in session.scalars(select(ExtractionAlert).order_by(ExtractionAlert.id))]


async def test_cancelling_the_practices_agenda_is_warned_of_then_refused_and_the_key_quarantined(
    make_api, world, big_practice, sync_engine  # noqa: F811  # the imported fixture
):
    api = make_api(budget_refill_per_second=10**4)
    key = world.keys["extractor"]
    targets = practice_bookings(sync_engine, big_practice, LIMIT + 1)
    for appointment in targets[:LIMIT]:
        done = await api.query(key, CANCEL, {"id": appointment})
        assert done.data["cancelAppointment"]["__typename"] == "AppointmentCancelled", done.body
    assert alerts(sync_engine) == [(AlertKind.DISRUPTION, 0.5), (AlertKind.DISRUPTION, 0.8)]
    refused = await api.query(key, CANCEL, {"id": targets[LIMIT]})
    assert refused.data is None and refused.codes == {"CHANGE_LIMIT_EXCEEDED"}
    (error,) = refused.errors
    assert error["extensions"]["quarantined"] is True and not any(ch.isdigit() for ch in error["message"])
    assert status_of(sync_engine, targets[LIMIT]) == AppointmentStatus.BOOKED  # nothing changed
    assert alerts(sync_engine)[2:] == [(AlertKind.DISRUPTION, None), (AlertKind.QUARANTINE, None)]
    again = await api.query(key, "{ viewer { name } }")
    assert (again.status, again.codes) == (403, {"KEY_QUARANTINED"})


async def test_rescheduling_counts_as_a_change_too(make_api, world, big_practice, sync_engine):  # noqa: F811
    api = make_api(budget_refill_per_second=10**4)
    with Session(sync_engine) as session, session.begin():
        from api.operators import accounts as operators

        operators.set_quarantine_on_refusal(session, "extractor", False)
    targets = practice_bookings(sync_engine, big_practice, LIMIT + 1)
    for i, appointment in enumerate(targets):
        with Session(sync_engine) as session:
            starts = session.scalar(select(Appointment.starts_at).where(Appointment.public_id == appointment))
        moved = starts + timedelta(days=400, minutes=i)  # a free time: no appointment that far ahead
        document = RESCHEDULE if i % 2 else CANCEL
        variables = (
            {"input": {"appointmentId": appointment, "startsAt": moved.isoformat(),
                       "endsAt": (moved + timedelta(minutes=15)).isoformat()}}
            if i % 2 else {"id": appointment}
        )  # fmt: skip
        response = await api.query(world.keys["extractor"], document, variables)
        if i < LIMIT:
            assert response.errors == [], response.body
        else:
            assert response.codes == {"CHANGE_LIMIT_EXCEEDED"}
            assert response.errors[0]["extensions"]["quarantined"] is False
    # Not quarantined: the partner's refusals do not quarantine; the next day it may change again.
    assert (await api.query(world.keys["extractor"], "{ viewer { name } }")).errors == []


async def test_a_partners_own_bookings_never_count(make_api, world, sync_engine):
    """Cancelling what it booked itself is the partner's own business (a churn alert watches for
    book-then-cancel), however many."""
    api = make_api(budget_refill_per_second=10**4)
    booked = []
    for i in range(LIMIT + 5):
        response = await api.query(
            world.keys["full"], BOOK, {"input": booking(world, FREE + timedelta(minutes=30 * i))}
        )
        assert response.data["bookAppointment"]["__typename"] == "AppointmentBooked", response.body
        booked.append(response.data["bookAppointment"]["appointment"]["id"])
    for appointment in booked:
        response = await api.query(world.keys["full"], CANCEL, {"id": appointment})
        assert response.data["cancelAppointment"]["__typename"] == "AppointmentCancelled", response.body
    assert AlertKind.DISRUPTION not in {kind for kind, _ in alerts(sync_engine)}


async def test_cancelling_and_rescheduling_at_once_count_one_after_the_other(
    make_api, world, big_practice, sync_engine  # noqa: F811
):
    """Two writes of one partner at one practice, at once, on both databases: each counted after the
    other under the change counter's lock, never a deadlock answered as a server error."""
    api = make_api(budget_refill_per_second=10**4, disruption_floor=1000)
    key = world.keys["extractor"]
    targets = practice_bookings(sync_engine, big_practice, 20)
    for i in range(0, len(targets), 2):
        with Session(sync_engine) as session:
            starts = session.scalar(select(Appointment.starts_at).where(Appointment.public_id == targets[i]))
        moved = starts + timedelta(days=400, minutes=i)
        move = {"appointmentId": targets[i], "startsAt": moved.isoformat(),
                "endsAt": (moved + timedelta(minutes=15)).isoformat()}  # fmt: skip
        rescheduled, cancelled = await asyncio.gather(
            api.query(key, RESCHEDULE, {"input": move}), api.query(key, CANCEL, {"id": targets[i + 1]})
        )
        assert rescheduled.errors == [] and cancelled.errors == [], (rescheduled.body, cancelled.body)
    with Session(sync_engine) as session:
        assert session.scalar(select(func.count()).select_from(PartnerChange)) == len(targets)


async def test_an_operator_sets_a_grants_limits_from_the_command_line(
    make_api, world, big_practice, sync_engine, cli  # noqa: F811
):
    """The practice's own software during a practitioner's absence: the operator raises (or lowers)
    the grant's change limit, as it may set the distinct-patient limit and caps; `none` computes them again."""
    lowered = cli("grant", "limits", "extractor", "Grand Cabinet", "--changes-per-day", "3", "--patients-per-day", "40")
    assert lowered.exit_code == 0, lowered.output
    assert "max_changes_per_day 3" in lowered.output and "max_patients_per_window 40" in lowered.output
    api = make_api(budget_refill_per_second=10**4)
    targets = practice_bookings(sync_engine, big_practice, 4)
    for appointment in targets[:3]:
        assert (await api.query(world.keys["extractor"], CANCEL, {"id": appointment})).errors == []
    assert (await api.query(world.keys["extractor"], CANCEL, {"id": targets[3]})).codes == {"CHANGE_LIMIT_EXCEEDED"}
    cleared = cli("grant", "limits", "extractor", "Grand Cabinet", "--changes-per-day", "none")
    assert cleared.exit_code == 0 and "max_changes_per_day" not in cleared.output
    assert cli("grant", "limits", "extractor", "Grand Cabinet", "--changes-per-day", "0").exit_code == 1
    assert cli("grant", "limits", "extractor", "Grand Cabinet", "--changes-per-day", "many").exit_code == 2
    assert cli("grant", "limits", "extractor", "Grand Cabinet").exit_code == 2
    with Session(sync_engine) as session:
        grant = session.scalars(select(Grant).where(Grant.max_patients_per_window == 40)).one()
        assert grant.max_changes_per_day is None
