"""What a partner could learn of practices it has no grant for, without reading them: through a write's
refusal, or through a cursor. Found by an outside review with a stolen key.

World: practitioner doctors[0] works at A ("full" holds a grant) and at B (only "other" does)."""

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.data.models import ChangeCounter
from api.services.cursors import _unb64
from tests.services.test_writes_and_sync import BOOK, FEED, RESCHEDULE
from tests.world import DAY

AT = DAY + timedelta(days=3, hours=2)  # nothing is booked then at A


def booking(world, practice: str, start, minutes: int = 20) -> dict[str, str]:
    return {
        "practiceId": world.practice_id(practice), "practitionerId": world.practitioners[practice][0],
        "startsAt": start.isoformat(), "endsAt": (start + timedelta(minutes=minutes)).isoformat(),
        "patientId": world.patients[practice][0],
    }


def moved_to(appointment_id: str, start) -> dict[str, dict[str, str]]:
    end = start + timedelta(minutes=20)
    return {"input": {"appointmentId": appointment_id, "startsAt": start.isoformat(), "endsAt": end.isoformat()}}


async def test_a_practitioners_appointment_at_another_practice_does_not_refuse_a_booking(api, world):
    # Refused SLOT_TAKEN, a booking (or moving one's own appointment, free and unlimited) showed
    # when the practitioner was busy at a practice whose agenda the partner may not read.
    other = await api.query(world.keys["other"], BOOK, {"input": booking(world, "B", AT)})
    assert other.data["bookAppointment"]["__typename"] == "AppointmentBooked"

    own = await api.query(world.keys["full"], BOOK, {"input": booking(world, "A", AT + timedelta(days=1))})
    own_id = own.data["bookAppointment"]["appointment"]["id"]
    moved = await api.query(world.keys["full"], RESCHEDULE, moved_to(own_id, AT))
    assert moved.data["rescheduleAppointment"]["__typename"] == "AppointmentRescheduled"
    booked = await api.query(world.keys["full"], BOOK, {"input": booking(world, "A", AT + timedelta(hours=1))})
    assert booked.data["bookAppointment"]["__typename"] == "AppointmentBooked"


async def test_the_practitioners_agenda_at_the_practice_itself_still_refuses_an_overlap(api, world):
    first = await api.query(world.keys["full"], BOOK, {"input": booking(world, "A", AT)})
    assert first.data["bookAppointment"]["__typename"] == "AppointmentBooked"
    overlapping = await api.query(world.keys["full"], BOOK, {"input": booking(world, "A", AT + timedelta(minutes=10))})
    assert overlapping.data["bookAppointment"]["reason"] == "SLOT_TAKEN"
    own = await api.query(world.keys["full"], BOOK, {"input": booking(world, "A", AT + timedelta(hours=2))})
    moved = await api.query(
        world.keys["full"], RESCHEDULE, moved_to(own.data["bookAppointment"]["appointment"]["id"], AT)
    )
    assert moved.data["rescheduleAppointment"]["reason"] == "SLOT_TAKEN"


async def test_the_change_feeds_cursor_does_not_show_the_platform_wide_count_of_writes(api, world, sync_engine):
    # The feed's position is the global change counter: in a readable cursor, the difference
    # between two polls counted every other partner's writes in between.
    for hour in range(3):
        booked = await api.query(world.keys["other"], BOOK, {"input": booking(world, "B", AT + timedelta(hours=hour))})
        assert booked.data["bookAppointment"]["__typename"] == "AppointmentBooked"
    await api.query(world.keys["full"], BOOK, {"input": booking(world, "A", AT + timedelta(hours=5))})
    with Session(sync_engine) as session:
        counter = session.scalar(select(func.max(ChangeCounter.value)))
    feed = await api.query(world.keys["full"], FEED, {"p": world.practice_id("A")})
    cursor = _unb64(feed.data["appointmentChanges"]["pageInfo"]["endCursor"])
    assert str(counter).encode() not in cursor
