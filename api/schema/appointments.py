
import enum
from datetime import date, datetime

import strawberry

from api.data import models
from api.errors import not_found
from api.ledger.disclosure_recorder import DisclosedRecord
from api.protection.cost import CONTACT_COST, HEALTH_COST, IDENTITY_COST, Cost
from api.schema.context import GraphQLContext
from api.schema.guard import build, require
from api.schema.loaders import Withheld
from api.schema.practices import Practice, Practitioner
from api.schema.relay import Node
from api.services.horizon import RecordFields

# strawberry.enum registers the GraphQL enum on the class itself: the aliases are for annotations.
strawberry.enum(models.AppointmentStatus, description="Where an appointment stands.")
strawberry.enum(models.Gender, description="Gender as recorded by the practice.")
AppointmentStatus = models.AppointmentStatus
Gender = models.Gender


@strawberry.enum(description="Who created the appointment.")
class AppointmentSource(enum.Enum):
    PRACTICE = "practice"
    YOU = "you"
    OTHER_PARTNER = "other_partner"


@strawberry.type(
    description="A patient record of one practice's file. Fields need patients:identity or patients:contact, and the "
    "patient to have an appointment made by the practice inside your grant's reading horizon (or its history "
    "permission)."
)
class Patient(Node):
    readable: strawberry.Private[frozenset[str]]
    disclosed: strawberry.Private[DisclosedRecord]  # its fields' values, recorded as they are resolved
    first_name: str | None = strawberry.field(
        description="First name. Needs patients:identity.", directives=[Cost(weight=IDENTITY_COST)]
    )
    last_name: str | None = strawberry.field(
        description="Last name. Needs patients:identity.", directives=[Cost(weight=IDENTITY_COST)]
    )
    gender: Gender | None = strawberry.field(
        description="Gender. Needs patients:identity.", directives=[Cost(weight=IDENTITY_COST)]
    )
    birth_date: date | None = strawberry.field(
        description="Birth date. Needs patients:identity.", directives=[Cost(weight=IDENTITY_COST)]
    )
    phone: str | None = strawberry.field(
        description="Phone number. Needs patients:contact.", directives=[Cost(weight=CONTACT_COST)]
    )
    email: str | None = strawberry.field(
        description="E-mail address. Needs patients:contact.", directives=[Cost(weight=CONTACT_COST)]
    )

    @classmethod
    def from_row(
        cls, patient: models.Patient, fields: RecordFields, in_horizon: bool, ctx: GraphQLContext
    ) -> "Patient":
        """`in_horizon`: the patient has an appointment inside the reading horizon that counts (reads.patients)."""
        readable = fields.side(in_horizon)
        return build(
            cls,
            readable,
            fields.closed(in_horizon),
            disclosed=ctx.disclosures.patient(patient, in_horizon),
            id=patient.public_id,
            first_name=patient.first_name,
            last_name=patient.last_name,
            gender=patient.gender,
            birth_date=patient.birth_date,
            phone=patient.phone,
            email=patient.email,
        )


async def _reason(root: "Appointment", info: strawberry.Info[GraphQLContext, None]) -> str | None:
    """The medical reason is the patient's health data: the distinct-patient budget admits the
    appointment's patient first, as for their record (the same batch and refusal: `Loaders.patient`),
    so paging reasons without selecting the patient is bounded like paging patients."""
    require(root, "Appointment.reason")
    reason, patient_id = root.row.reason, root.row.patient_id
    if reason is None:
        return None
    if patient_id is not None:
        try:
            await info.context.loaders.reason_of(patient_id)
        except Withheld:  # the practice's refusal is already in the response
            return None
    root.disclosed.carried("Appointment.reason")
    return reason


@strawberry.type(description="An appointment at a practice.")
class Appointment(Node):
    readable: strawberry.Private[frozenset[str]]
    closed: strawberry.Private[frozenset[str]]  # what the reading horizon withholds (`require` says so)
    disclosed: strawberry.Private[DisclosedRecord]
    row: strawberry.Private[models.Appointment]
    starts_at: datetime | None = strawberry.field(description="Start, ISO 8601 in UTC.")
    ends_at: datetime | None = strawberry.field(description="End, ISO 8601 in UTC.")
    status: AppointmentStatus | None = strawberry.field(description="Status.")
    reason: str | None = strawberry.field(
        description="Medical motive (health data). Needs appointments:reason, and the appointment inside your "
        "grant's reading horizon (or its history permission). Reading it reads the patient's data: it counts "
        "towards the patients your key reads at the practice, as reading the patient does.",
        directives=[Cost(weight=HEALTH_COST)],
        resolver=_reason,
    )
    source: AppointmentSource | None = strawberry.field(description="Who created it.")
    created_at: datetime | None = strawberry.field(description="When it was created.")
    updated_at: datetime | None = strawberry.field(description="When it last changed.")

    @classmethod
    def from_row(cls, row: models.Appointment, fields: RecordFields, ctx: GraphQLContext) -> "Appointment":
        in_horizon = fields.holds(row, ctx.principal.partner_id)
        readable = fields.side(in_horizon)
        source = (
            AppointmentSource.PRACTICE
            if row.source_partner_id is None
            else AppointmentSource.YOU
            if row.source_partner_id == ctx.principal.partner_id
            else AppointmentSource.OTHER_PARTNER
        )
        closed = fields.closed(in_horizon)
        return build(
            cls,
            readable,
            closed,
            closed=closed,
            disclosed=ctx.disclosures.appointment(row, in_horizon),
            row=row,
            id=row.public_id,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            status=row.status,
            source=source,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    @strawberry.field(description="The practice.")
    async def practice(self, info: strawberry.Info[GraphQLContext, None]) -> Practice | None:
        require(self, "Appointment.practice")
        practice = await info.context.loaders.practices.load(self.row.practice_id)
        if practice is None:
            raise not_found("practice")
        return Practice.from_row(practice, await info.context.fields.at(practice.id))

    @strawberry.field(description="The practitioner, as seen at this practice.")
    async def practitioner(self, info: strawberry.Info[GraphQLContext, None]) -> Practitioner | None:
        require(self, "Appointment.practitioner")
        key = (self.row.practice_id, self.row.practitioner_id)
        membership = await info.context.loaders.practitioners.load(key)
        if membership is None:  # the practitioner has left the practice
            raise not_found("practitioner")
        return Practitioner.from_row(membership, await info.context.fields.at(membership.practice_id))

    @strawberry.field(description="The patient record. Its fields need patients:identity or patients:contact.")
    async def patient(self, info: strawberry.Info[GraphQLContext, None]) -> Patient | None:
        require(self, "Appointment.patient")
        try:
            patient = await info.context.loaders.patient(self.row.patient_id)
        except Withheld:
            return None
        if patient is None:
            raise not_found("patient")
        fields = await info.context.fields.record_fields_at(patient.row.practice_id)
        return Patient.from_row(patient.row, fields, patient.in_horizon, info.context)
