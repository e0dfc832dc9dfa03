
import math
import time
from datetime import datetime
from typing import Annotated

import strawberry
from sqlalchemy.orm import joinedload

from api.data import models

from api.services import reads
from api.schema.context import GraphQLContext
from api.protection.cost import Cost, ListSize
from api.errors import ApiError, ErrorCode, bad_input
from api.schema.changes import ChangeQuery
from api.schema.deferred import Deferred
from api.schema.appointments import Appointment, AppointmentConnection, AppointmentEdge, AppointmentStatus, Patient
from api.schema.practices import Practice, PracticeConnection, PracticeEdge, Practitioner
from api.schema.relay import Node, PageInfo
from api.schema.viewer import RateLimit, Viewer, ViewerGrant

Info = strawberry.Info[GraphQLContext, None]
MAX_NODES = 100


async def _node(ctx: GraphQLContext, public_id: str) -> Node:
    kind, row = await reads.find_node(ctx.uow, public_id)
    if kind == "Appointment":
        return Appointment.from_row(row, await ctx.fields.at(row.practice_id), ctx)
    if kind == "Practitioner":
        membership = await ctx.loaders.practitioners.load((row.practice_id, row.practitioner_id))
        return Practitioner.from_row(membership, await ctx.fields.at(row.practice_id))
    if kind == "Patient":
        patient = await ctx.loaders.patients.load(row.id)  # through the distinct-patient budget
        return Patient.from_row(patient, await ctx.fields.at(row.practice_id), ctx)
    return Practice.from_row(row, await ctx.fields.at(row.id))


@strawberry.type(description="Entry points for partner software. Every list is paged with `first` (1 to 100).")
class Query(ChangeQuery):
    @strawberry.field(description="You, the calling partner, and your grants.")
    async def viewer(self, info: Info) -> Viewer:
        ctx = info.context
        statement = ctx.uow.authorized(models.Grant).options(joinedload(models.Grant.practice)).order_by(models.Grant.id)
        grants = (await ctx.uow.execute(statement)).scalars()
        return Viewer(
            id=strawberry.ID(ctx.principal.partner_public_id),
            name=ctx.principal.partner_name,
            key_prefix=ctx.principal.key_prefix,
            grants=[
                ViewerGrant(
                    id=strawberry.ID(g.public_id), practice_id=strawberry.ID(g.practice.public_id),
                    practice_name=g.practice.name, scopes=sorted(g.scopes), granted_at=g.granted_at,
                    expires_at=g.expires_at,
                )
                for g in grants
            ],
        )

    @strawberry.field(
        description="Your cost budget, to plan requests (reading it costs nothing).", directives=[Cost(weight=0)]
    )
    async def rate_limit(self, info: Info) -> RateLimit:
        ctx = info.context
        async with ctx.uow.transaction() as session:
            throttle = await ctx.budgets.status(session, ctx.principal, time.time())
        return RateLimit(
            maximum_available=throttle.maximum_available,
            currently_available=math.floor(throttle.currently_available),
            restore_rate=throttle.restore_rate,
            max_query_cost=ctx.settings.max_query_cost,
        )

    @strawberry.field(
        description="Practices that granted you access, ordered by id.",
        directives=[ListSize(slicing_arguments=["first"], sized_fields=["edges"])],
    )
    async def practices(
        self,
        info: Info,
        first: Annotated[int, strawberry.argument(description="Page size, 1 to 100.")],
        after: Annotated[str | None, strawberry.argument(description="`endCursor` of the previous page.")] = None,
    ) -> PracticeConnection:
        ctx = info.context
        page = await reads.practices(ctx.uow, ctx.cursors, first, after)
        readable = await ctx.fields.at_practices(p.id for p in page.rows)
        return PracticeConnection(
            edges=[
                PracticeEdge(cursor=Deferred(cursor),  # type: ignore[arg-type]
                              node=Practice.from_row(row, readable[row.id]))
                for row, cursor in zip(page.rows, page.cursors, strict=True)
            ],
            page_info=PageInfo.of(page),
        )

    @strawberry.field(description="A practice by id. NOT_FOUND when it does not exist or did not grant you access.")
    async def practice(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="Practice id.")]
    ) -> Practice | None:
        row = await reads.find_by_public_id(info.context.uow, models.Practice, id)
        return Practice.from_row(row, await info.context.fields.at(row.id))

    @strawberry.field(
        description="Appointments of a practice starting in [from, to), ordered by start time. Needs appointments:read.",
        directives=[ListSize(slicing_arguments=["first"], sized_fields=["edges"])],
    )
    async def appointments(
        self,
        info: Info,
        practice_id: Annotated[strawberry.ID, strawberry.argument(description="Practice id.")],
        from_: Annotated[
            datetime, strawberry.argument(name="from", description="Window start (inclusive), with a time zone offset.")
        ],
        to: Annotated[datetime, strawberry.argument(description=f"Window end (exclusive); at most {reads.MAX_WINDOW_DAYS} days after `from`.")],
        first: Annotated[int, strawberry.argument(description="Page size, 1 to 100.")],
        after: Annotated[str | None, strawberry.argument(description="`endCursor` of the previous page.")] = None,
        practitioner_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this practitioner's.")] = None,
        status: Annotated[AppointmentStatus | None, strawberry.argument(description="Only this status.")] = None,
    ) -> AppointmentConnection:
        ctx = info.context
        page = await reads.appointments(ctx.uow, ctx.cursors, practice_id, from_, to, practitioner_id, status, first, after)
        readable = await ctx.fields.at_practices({row.practice_id for row in page.rows})
        return AppointmentConnection(
            edges=[
                AppointmentEdge(
                    cursor=Deferred(cursor),  # type: ignore[arg-type]
                    node=Appointment.from_row(row, readable[row.practice_id], ctx)
                )
                for row, cursor in zip(page.rows, page.cursors, strict=True)
            ],
            page_info=PageInfo.of(page),
        )

    @strawberry.field(description="Any object by its global id. NOT_FOUND when missing or not visible to you.")
    async def node(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="Global id.")]
    ) -> Node | None:
        return await _node(info.context, id)

    @strawberry.field(
        description=f"Several objects by global id (at most {MAX_NODES}); null where not found.",
        directives=[ListSize(slicing_arguments=["ids"])],
    )
    async def nodes(
        self, info: Info, ids: Annotated[list[strawberry.ID], strawberry.argument(description="Global ids.")]
    ) -> list[Node | None]:
        if not 1 <= len(ids) <= MAX_NODES:
            raise bad_input(f"`ids` holds 1 to {MAX_NODES} ids.", argument="ids")
        results: list[Node | None] = []
        for public_id in ids:
            try:
                results.append(await _node(info.context, public_id))
            except ApiError as error:
                if error.extensions["code"] != ErrorCode.NOT_FOUND:
                    raise  # e.g. the distinct-patient budget: refuse, do not hide it as missing
                results.append(None)  # a missing node is null, like GitHub's API
        return results
