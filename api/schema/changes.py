import enum
from typing import Annotated

import strawberry

from api.data import models

from api.services import reads
from api.schema.context import GraphQLContext
from api.protection.cost import Cost, ListSize
from api.schema.appointments import Appointment
from api.schema.deferred import Deferred
from api.schema.guard import build, require
from api.schema.relay import PageInfo


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
    kind: ChangeKind | None = strawberry.field(description="Created, updated, cancelled, or deleted (a tombstone).")
    appointment_id: strawberry.ID | None = strawberry.field(description="Id of the appointment, also for deleted ones.")

    @strawberry.field(description="The appointment as it is now; null when it was deleted.")
    async def appointment(self, info: strawberry.Info[GraphQLContext, None]) -> Appointment | None:
        require(self, "AppointmentChange.appointment")
        if self.row.appointment is None:
            return None
        return Appointment.from_row(self.row.appointment, self.readable, info.context)


@strawberry.type(description="One edge of the change feed.", directives=[Cost(weight=0)])
class AppointmentChangeEdge:
    cursor: str = strawberry.field(description="Resume after this change with `since`.")
    node: AppointmentChange = strawberry.field(description="The change.")


@strawberry.type(description="A page of the change feed, oldest change first.", directives=[Cost(weight=0)])
class AppointmentChangeConnection:
    edges: list[AppointmentChangeEdge] = strawberry.field(description="Changes, in the order they happened.")
    page_info: PageInfo = strawberry.field(
        description="`endCursor` is where to resume next time, even when this page is empty."
    )


@strawberry.type
class ChangeQuery:
    @strawberry.field(
        description="Sync feed: appointments of a practice created, updated, cancelled or deleted after `since`. "
        "Start without `since`, then keep the last `endCursor`. Needs appointments:read.",
        directives=[ListSize(slicing_arguments=["first"], sized_fields=["edges"])],
    )
    async def appointment_changes(
        self,
        info: strawberry.Info[GraphQLContext, None],
        practice_id: Annotated[strawberry.ID, strawberry.argument(description="Practice id.")],
        first: Annotated[int, strawberry.argument(description="Page size, 1 to 100.")],
        since: Annotated[str | None, strawberry.argument(description="`endCursor` of your last sync; none for the start.")] = None,
    ) -> AppointmentChangeConnection:
        ctx = info.context
        page = await reads.changes(ctx.uow, ctx.cursors, practice_id, since, first)
        readable = await ctx.fields.at_practices({change.practice_id for change in page.rows})
        return AppointmentChangeConnection(
            edges=[
                AppointmentChangeEdge(
                    cursor=Deferred(cursor),  # type: ignore[arg-type]
                    node=build(
                        AppointmentChange, readable[change.practice_id], row=change, kind=kind_of(change),
                        appointment_id=strawberry.ID(change.appointment_public_id),
                    ),
                )
                for change, cursor in zip(page.rows, page.cursors, strict=True)
            ],
            page_info=PageInfo.of(page),
        )
