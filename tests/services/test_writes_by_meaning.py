"""Writes answer by meaning: an idempotency key is bound to what the input means (instants, not
how their offset was written), every instant is answered in UTC, and cancelling follows the same
changeability rule as rescheduling."""

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.data.models import Appointment, AppointmentStatus, IdempotencyRecord
from api.services.writes import request_hash, text_request_hash
from tests.services.test_writes_and_sync import BOOK, FREE, RESCHEDULE, booking

MINUTE = timedelta(minutes=1)

# Every offset a time zone has had, to the minute: -12:00 to +14:00 in quarter hours.
OFFSETS = st.integers(-48, 56).map(lambda quarters: timezone(timedelta(minutes=15 * quarters)))
INSTANTS = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda naive: naive.replace(tzinfo=UTC)
)
_slots = itertools.count()


@given(instant=INSTANTS, first=OFFSETS, second=OFFSETS)
def test_the_same_instants_written_with_any_offsets_are_the_same_request(instant, first, second):
    def payload(offset):
        return {"appointment": "apt_x", "starts": instant.astimezone(offset), "ends": instant.astimezone(offset)}

    assert request_hash("reschedule", payload(first)) == request_hash("reschedule", payload(second))


@given(instant=INSTANTS, offset=OFFSETS, shift=st.integers(1, 10**6).map(lambda s: timedelta(seconds=s)))
def test_another_instant_is_another_request_whatever_its_offset(instant, offset, shift):
    def payload(starts):
        return {"appointment": "apt_x", "starts": starts, "ends": instant}

    assert request_hash("reschedule", payload(instant)) != request_hash(
        "reschedule", payload((instant + shift).astimezone(offset))
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=OFFSETS, second=OFFSETS, shift_minutes=st.integers(1, 600))
async def test_a_booking_retried_with_other_offsets_replays_and_a_changed_one_is_refused(
    api, world, first, second, shift_minutes
):
    start = FREE + timedelta(hours=next(_slots) * 2)  # a free slot for each example
    key = f"meaning-{start.isoformat()}"

    def written(offset, starts):
        return booking(world, starts.astimezone(offset), idempotencyKey=key) | {
            "endsAt": (start + timedelta(minutes=20)).astimezone(offset).isoformat()
        }

    booked = await api.query(world.keys["full"], BOOK, {"input": written(first, start)})
    assert booked.data["bookAppointment"]["__typename"] == "AppointmentBooked", booked.body
    retried = await api.query(world.keys["full"], BOOK, {"input": written(second, start)})
    assert retried.errors == [] and retried.data == booked.data
    changed = await api.query(
        world.keys["full"], BOOK, {"input": written(second, start + timedelta(minutes=shift_minutes))}
    )
    assert changed.codes == {"BAD_USER_INPUT"}


async def test_a_booking_is_answered_in_utc_the_first_time_as_on_its_replay(api, world):
    new_york = timezone(timedelta(hours=-4))
    variables = {"input": booking(world, FREE.astimezone(new_york), idempotencyKey="utc-1")}
    assert variables["input"]["startsAt"].endswith("-04:00")
    first = await api.query(world.keys["full"], BOOK, variables)
    replay = await api.query(world.keys["full"], BOOK, variables)
    starts_at = first.data["bookAppointment"]["appointment"]["startsAt"]
    assert starts_at == FREE.astimezone(UTC).isoformat() and starts_at.endswith("+00:00")
    assert replay.data == first.data
    moved = await api.query(
        world.keys["full"],
        RESCHEDULE,
        {
            "input": {
                "appointmentId": first.data["bookAppointment"]["appointment"]["id"],
                "startsAt": (FREE + timedelta(hours=1)).astimezone(new_york).isoformat(),
                "endsAt": (FREE + timedelta(hours=1, minutes=20)).astimezone(new_york).isoformat(),
            }
        },
    )
    assert moved.data["rescheduleAppointment"]["appointment"]["startsAt"].endswith("+00:00")


async def test_date_time_scalar_is_specified_by_rfc_3339(api, world):
    response = await api.query(world.keys["full"], '{ __type(name: "DateTime") { specifiedByURL } }')
    assert response.data["__type"]["specifiedByURL"] == "https://datatracker.ietf.org/doc/html/rfc3339"


@pytest.mark.parametrize("status", [AppointmentStatus.FULFILLED, AppointmentStatus.ARRIVED, AppointmentStatus.NOSHOW])
async def test_an_appointment_that_happened_cannot_be_cancelled_as_it_cannot_be_rescheduled(
    api, world, sync_engine, status
):
    target = world.appointments["A"][3]
    with Session(sync_engine) as session, session.begin():
        session.execute(update(Appointment).where(Appointment.public_id == target).values(status=status))
    cancel = await api.query(
        world.keys["full"],
        "mutation($id: ID!) { cancelAppointment(appointmentId: $id) { __typename ... on WriteRefused { reason } } }",
        {"id": target},
    )
    assert cancel.errors == []
    assert cancel.data["cancelAppointment"] == {"__typename": "WriteRefused", "reason": "NOT_CHANGEABLE"}
    move = await api.query(
        world.keys["full"],
        RESCHEDULE,
        {"input": {"appointmentId": target, "startsAt": FREE.isoformat(), "endsAt": (FREE + MINUTE).isoformat()}},
    )
    assert move.data["rescheduleAppointment"]["reason"] == "NOT_CHANGEABLE"
    with Session(sync_engine) as session:
        assert session.scalar(select(Appointment.status).where(Appointment.public_id == target)) == status


async def test_a_key_recorded_before_meaning_was_compared_still_replays_its_request(api, world, sync_engine):
    """Records written with the digest of the input's text (before this change) replay that input."""
    new_york = timezone(timedelta(hours=-4))
    variables = {"input": booking(world, FREE.astimezone(new_york), idempotencyKey="text-1")}
    first = await api.query(world.keys["full"], BOOK, variables)
    sent = variables["input"]
    payload = {
        "practice": sent["practiceId"],
        "practitioner": sent["practitionerId"],
        "patient": sent["patientId"],
        "new_patient": None,
        "starts": datetime.fromisoformat(sent["startsAt"]),
        "ends": datetime.fromisoformat(sent["endsAt"]),
        "reason": None,
    }
    with Session(sync_engine) as session, session.begin():
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == "text-1")
            .values(request_hash=text_request_hash("book", payload))
        )
    again = await api.query(world.keys["full"], BOOK, variables)
    assert again.errors == [] and again.data == first.data
