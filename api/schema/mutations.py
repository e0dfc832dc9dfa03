from datetime import date, datetime
from typing import Annotated

import strawberry

from api.data.models import Appointment as AppointmentRow
from api.protection.cost import Cost
from api.protection.input_validation import ValidatedInput
from api.schema import constraints
from api.schema.appointments import Appointment, Gender
from api.schema.context import GraphQLContext
from api.services import writes

Info = strawberry.Info[GraphQLContext, None]
WRITE_COST = 10

# Registered on the class itself (see api/schema/appointments.py); the alias is for annotations.
strawberry.enum(
    writes.RefusalReason,
    name="WriteRefusalReason",
    description="Why a valid, authorized write was refused by the practice's agenda.",
)
RefusalReason = writes.RefusalReason


@strawberry.input(description="A patient to add to the practice's file with the booking.")
class NewPatientInput:
    first_name: str = strawberry.field(
        description="First name; stored without surrounding spaces.", directives=[constraints.FIRST_NAME]
    )
    last_name: str = strawberry.field(
        description="Last name; stored without surrounding spaces.", directives=[constraints.LAST_NAME]
    )
    gender: Gender = strawberry.field(description="Gender.")
    birth_date: date | None = strawberry.field(description="Birth date.", default=None)
    phone: str | None = strawberry.field(description="Phone number.", default=None, directives=[constraints.PHONE])
    email: str | None = strawberry.field(description="E-mail address.", default=None, directives=[constraints.EMAIL])


@strawberry.input(description="An appointment to book.")
class BookAppointmentInput:
    practice_id: strawberry.ID = strawberry.field(description="Practice id.", directives=[constraints.ID])
    practitioner_id: strawberry.ID = strawberry.field(
        description="Practitioner id, at this practice.", directives=[constraints.ID]
    )
    starts_at: datetime = strawberry.field(description="Start, with a time zone offset; in the future.")
    ends_at: datetime = strawberry.field(description="End, after the start, at most 8 hours later.")
    patient_id: strawberry.ID | None = strawberry.field(
        description="An existing patient of this practice...", default=None, directives=[constraints.ID]
    )
    new_patient: NewPatientInput | None = strawberry.field(description="...or a new one.", default=None)
    reason: str | None = strawberry.field(
        description="Medical motive, if known.", default=None, directives=[constraints.REASON]
    )
    idempotency_key: str | None = strawberry.field(
        description="Any unique string: retrying with it never books twice.",
        default=None,
        directives=[constraints.IDEMPOTENCY_KEY],
    )


@strawberry.input(description="A new time for a booked appointment.")
class RescheduleAppointmentInput:
    appointment_id: strawberry.ID = strawberry.field(description="Appointment id.", directives=[constraints.ID])
    starts_at: datetime = strawberry.field(description="New start, with a time zone offset; in the future.")
    ends_at: datetime = strawberry.field(description="New end.")
    idempotency_key: str | None = strawberry.field(
        description="Makes retries safe.", default=None, directives=[constraints.IDEMPOTENCY_KEY]
    )


@strawberry.type(description="The appointment was booked.")
class AppointmentBooked:
    appointment: Appointment = strawberry.field(description="The new appointment.")


@strawberry.type(description="The appointment was moved.")
class AppointmentRescheduled:
    appointment: Appointment = strawberry.field(description="The appointment, at its new time.")


@strawberry.type(description="The appointment is cancelled (also when it already was).")
class AppointmentCancelled:
    appointment: Appointment = strawberry.field(description="The cancelled appointment.")


@strawberry.type(description="The write was valid and allowed, but the agenda refused it.")
class WriteRefused:
    reason: RefusalReason = strawberry.field(description="Why.")
    message: str = strawberry.field(description="Why, in words.")


BookResult = Annotated[
    AppointmentBooked | WriteRefused, strawberry.union("BookAppointmentResult", description="Booked, or refused.")
]
CancelResult = Annotated[
    AppointmentCancelled | WriteRefused,
    strawberry.union("CancelAppointmentResult", description="Cancelled, or refused."),
]
RescheduleResult = Annotated[
    AppointmentRescheduled | WriteRefused,
    strawberry.union("RescheduleAppointmentResult", description="Moved, or refused."),
]


def _refused(info: Info, refusal: writes.Refusal) -> WriteRefused:
    if refusal.about is not None:  # its state is told (e.g. no longer booked): the ledger names it, no field of it
        info.context.disclosures.appointment(refusal.about, in_horizon=True)
    return WriteRefused(reason=refusal.reason, message=refusal.reason.value)


async def _appointment(info: Info, row: AppointmentRow) -> Appointment:
    ctx = info.context
    return Appointment.from_row(row, await ctx.fields.record_fields_at(row.practice_id), ctx)


@strawberry.type(description="Writes. Each needs appointments:write at the practice and costs 10 points.")
class Mutation:
    @strawberry.mutation(
        description="Book an appointment for an existing or a new patient.",
        directives=[Cost(weight=WRITE_COST)],
        extensions=[ValidatedInput()],
    )
    async def book_appointment(
        self, info: Info, input: Annotated[BookAppointmentInput, strawberry.argument(description="What to book.")]
    ) -> BookResult:
        new_patient = None
        if input.new_patient is not None:
            p = input.new_patient  # names are not blank: their @constraint says so
            new_patient = writes.NewPatient(
                p.first_name.strip(), p.last_name.strip(), p.gender, p.birth_date, p.phone, p.email
            )
        result = await writes.book(
            info.context.uow,
            input.practice_id,
            input.practitioner_id,
            input.patient_id,
            new_patient,
            input.starts_at,
            input.ends_at,
            input.reason,
            input.idempotency_key,
        )
        if isinstance(result, writes.Refusal):
            return _refused(info, result)
        return AppointmentBooked(appointment=await _appointment(info, result))

    @strawberry.mutation(
        description="Move a booked appointment.", directives=[Cost(weight=WRITE_COST)], extensions=[ValidatedInput()]
    )
    async def reschedule_appointment(
        self,
        info: Info,
        input: Annotated[RescheduleAppointmentInput, strawberry.argument(description="Where to move it.")],
    ) -> RescheduleResult:
        result = await writes.reschedule(
            info.context.uow,
            info.context.extraction,
            input.appointment_id,
            input.starts_at,
            input.ends_at,
            input.idempotency_key,
        )
        if isinstance(result, writes.Refusal):
            return _refused(info, result)
        return AppointmentRescheduled(appointment=await _appointment(info, result))

    @strawberry.mutation(
        description="Cancel a booked appointment (an arrived, fulfilled or missed one is refused: NOT_CHANGEABLE, "
        "as for rescheduling). Safe to retry: an appointment already cancelled is answered as cancelled.",
        directives=[Cost(weight=WRITE_COST)],
        extensions=[ValidatedInput()],
    )
    async def cancel_appointment(
        self,
        info: Info,
        appointment_id: Annotated[
            strawberry.ID, strawberry.argument(description="Appointment id.", directives=[constraints.ID])
        ],
    ) -> CancelResult:
        result = await writes.cancel(info.context.uow, info.context.extraction, appointment_id)
        if isinstance(result, writes.Refusal):
            return _refused(info, result)
        return AppointmentCancelled(appointment=await _appointment(info, result))
