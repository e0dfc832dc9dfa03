import enum
from typing import Annotated

import strawberry

from api.data import models
from api.protection.cost import ListSize
from api.protection.input_validation import ValidatedInput
from api.schema import constraints
from api.schema.appointments import Appointment
from api.schema.context import GraphQLContext
from api.schema.guard import build, require
from api.schema.relay import Connection
from api.services import reads
from api.services.horizon import RecordFields


@strawberry.enum(description="What happened to an appointment.")
class ChangeKind(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    CANCELLED = "cancelled"
    DELETED = "deleted"


def kind_of(change: reads.Change) -> ChangeKind:
    appointment = change.appointment
    if appointment is None:
        return ChangeKind.DELETED
    if appointment.status == models.AppointmentStatus.CANCELLED:
        return ChangeKind.CANCELLED
    return ChangeKind.CREATED if appointment.created_at == appointment.updated_at else ChangeKind.UPDATED


@strawberry.type(description="The latest change of one appointment since your cursor.")
class AppointmentChange:
    readable: strawberry.Private[frozenset[str]]
    row: strawberry.Private[reads.Change]
    record_fields: strawberry.Private[RecordFields]
    kind: ChangeKind | None = strawberry.field(description="Created, updated, cancelled, or deleted (a tombstone).")
    appointment_id: strawberry.ID | None = strawberry.field(description="Id of the appointment, also for deleted ones.")

    @strawberry.field(description="The appointment as it is now; null when it was deleted.")
    async def appointment(self, info: strawberry.Info[GraphQLContext, None]) -> Appointment | None:
        require(self, "AppointmentChange.appointment")
        if self.row.appointment is None:
            return None
        return Appointment.from_row(self.row.appointment, self.record_fields, info.context)


# The feed pages forward only: `first` changes after `since`.
FEED_PAGED = ListSize(slicing_arguments=["first"], sized_fields=["edges"])
FeedFirst = Annotated[int, strawberry.argument(description=f"Page size, 1 to {reads.MAX_PAGE_SIZE}.")]


@strawberry.type
class ChangeQuery:
    @strawberry.field(
        description="Sync feed: appointments of a practice created, updated, cancelled or deleted after `since`. "
        "Start without `since`, then keep the last `endCursor`. Needs appointments:read. Its cursors are those of "
        "a connection (`since` is the `after` of this feed), but it pages forward only, without `last`/`before`: "
        "it is a log that grows at its end, where a change moves an appointment, so there is no stable page "
        "before a position to go back to; `endCursor` is set even on an empty page, ready for the next poll.",
        directives=[FEED_PAGED],
        extensions=[ValidatedInput()],
    )
    async def appointment_changes(
        self,
        info: strawberry.Info[GraphQLContext, None],
        practice_id: Annotated[
            strawberry.ID, strawberry.argument(description="Practice id.", directives=[constraints.ID])
        ],
        first: FeedFirst,
        since: Annotated[
            str | None,
            strawberry.argument(
                description="`endCursor` of your last sync; none for the start.", directives=[constraints.CURSOR]
            ),
        ] = None,
    ) -> Connection[AppointmentChange]:
        ctx = info.context
        page = await reads.changes(ctx.uow, ctx.cursors, practice_id, since, first)
        fields = await ctx.fields.record_fields({change.practice_id for change in page.rows})
        return Connection.of(page, lambda change: _change(ctx, fields[change.practice_id], change))


def _change(ctx: GraphQLContext, fields: RecordFields, change: reads.Change) -> AppointmentChange:
    appointment = change.appointment
    if appointment is not None:  # its id and status leave with the change: a record of the response, as on a page
        ctx.disclosures.appointment(appointment, fields.holds(appointment, ctx.principal.partner_id))
    return build(
        AppointmentChange,
        fields.outside,
        row=change,
        record_fields=fields,
        kind=kind_of(change),
        appointment_id=strawberry.ID(change.appointment_public_id),
    )
