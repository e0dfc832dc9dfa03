
import asyncio
import math
from datetime import datetime
from typing import Annotated, Any

import strawberry
from sqlalchemy.orm import joinedload

from api.data import models
from api.errors import ApiError, ErrorCode, bad_input, not_found
from api.protection.cost import Cost, ListSize
from api.protection.input_validation import ValidatedInput
from api.schema import constraints
from api.schema.appointments import Appointment, AppointmentStatus, Patient
from api.schema.changes import ChangeQuery
from api.schema.context import GraphQLContext
from api.schema.loaders import Withheld
from api.schema.practices import Practice, Practitioner
from api.schema.relay import PAGED, After, Before, Connection, First, Last, Node, page_slice
from api.schema.viewer import RateLimit, Viewer, ViewerGrant
from api.services import reads

Info = strawberry.Info[GraphQLContext, None]
MAX_NODES = 100


async def _node(ctx: GraphQLContext, public_id: str) -> Node | None:
    return await _built(ctx, *await reads.find_node(ctx.uow, public_id))


async def _built(ctx: GraphQLContext, kind: str, row: Any) -> Node | None:
    """The node of a row found visible; a patient through the distinct-patient budget."""
    if kind == "Appointment":
        return Appointment.from_row(row, await ctx.fields.record_fields_at(row.practice_id), ctx)
    if kind == "Practitioner":
        membership = await ctx.loaders.practitioners.load((row.practice_id, row.practitioner_id))
        if membership is None:  # found a moment ago: gone since, or no longer visible
            raise not_found("Practitioner")
        return Practitioner.from_row(membership, await ctx.fields.at(row.practice_id))
    if kind == "Patient":
        try:
            patient = await ctx.loaders.patient(row.id)  # through the distinct-patient budget
        except Withheld:  # its practice's refusal is already in the response
            return None
        if patient is None:  # found a moment ago: gone since, or no longer visible
            raise not_found("Patient")
        return Patient.from_row(
            patient.row, await ctx.fields.record_fields_at(row.practice_id), patient.in_horizon, ctx
        )
    return Practice.from_row(row, await ctx.fields.at(row.id))


@strawberry.type(
    description="Entry points for partner software. Every list is paged: `first` (1 to 100) items after `after`, "
    "or `last` before `before`."
)
class Query(ChangeQuery):
    @strawberry.field(description="You, the calling partner, and your grants.")
    async def viewer(self, info: Info) -> Viewer:
        ctx = info.context
        statement = (
            ctx.uow.authorized(models.Grant).options(joinedload(models.Grant.practice)).order_by(models.Grant.id)
        )
        grants = (await ctx.uow.execute(statement)).scalars()
        return Viewer(
            id=strawberry.ID(ctx.principal.partner_public_id),
            name=ctx.principal.partner_name,
            key_prefix=ctx.principal.key_prefix,
            key_mode=ctx.principal.key_mode,
            grants=[
                ViewerGrant(
                    id=strawberry.ID(g.public_id),
                    practice_id=strawberry.ID(g.practice.public_id),
                    practice_name=g.practice.name,
                    scopes=sorted(scope.value for scope in g.scopes),
                    granted_at=g.granted_at,
                    expires_at=g.expires_at,
                    days_back=g.days_back,
                    days_ahead=g.days_ahead,
                    # An ended permission is no permission: the partner sees null, as for none.
                    history_until=g.history_until if ctx.uow.authorizer.history_open(ctx.identity.actor, g) else None,
                )
                for g in grants
            ],
        )

    @strawberry.field(
        description="Your cost budget, to plan requests (it adds nothing to the price; an operation costs 1 point "
        "at least).",
        directives=[Cost(weight=0)],
    )
    async def rate_limit(self, info: Info) -> RateLimit:
        ctx = info.context
        async with ctx.uow.transaction() as session:
            throttle = await ctx.budgets.status(session, ctx.principal, ctx.identity.request_time.timestamp())
        return RateLimit(
            maximum_available=throttle.maximum_available,
            currently_available=math.floor(throttle.currently_available),
            restore_rate=throttle.restore_rate,
            max_query_cost=ctx.settings.max_query_cost,
        )

    @strawberry.field(
        description="Practices that granted you access, ordered by id.",
        directives=[PAGED],
        extensions=[ValidatedInput()],
    )
    async def practices(
        self, info: Info, first: First = None, after: After = None, last: Last = None, before: Before = None
    ) -> Connection[Practice]:
        ctx = info.context
        page = await reads.practices(ctx.uow, ctx.cursors, page_slice(first, after, last, before))
        readable = await ctx.fields.at_practices(p.id for p in page.rows)
        return Connection.of(page, lambda row: Practice.from_row(row, readable[row.id]))

    @strawberry.field(
        description="A practice by id. NOT_FOUND when it does not exist or did not grant you access.",
        extensions=[ValidatedInput()],
    )
    async def practice(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="Practice id.", directives=[constraints.ID])],
    ) -> Practice | None:
        row = await reads.find_by_public_id(info.context.uow, models.Practice, id)
        return Practice.from_row(row, await info.context.fields.at(row.id))

    @strawberry.field(
        description="Appointments of a practice starting in [from, to), ordered by start time. Needs "
        "appointments:read.",
        directives=[PAGED],
        extensions=[ValidatedInput()],
    )
    async def appointments(
        self,
        info: Info,
        practice_id: Annotated[
            strawberry.ID, strawberry.argument(description="Practice id.", directives=[constraints.ID])
        ],
        from_: Annotated[
            datetime, strawberry.argument(name="from", description="Window start (inclusive), with a time zone offset.")
        ],
        to: Annotated[
            datetime,
            strawberry.argument(
                description=f"Window end (exclusive); at most {reads.MAX_WINDOW_DAYS} days after `from`."
            ),
        ],
        first: First = None,
        after: After = None,
        practitioner_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only this practitioner's.", directives=[constraints.ID]),
        ] = None,
        status: Annotated[
            AppointmentStatus | None,
            strawberry.argument(
                description="Only this status.", deprecation_reason="Use `statuses`, which takes one or several."
            ),
        ] = None,
        statuses: Annotated[
            list[AppointmentStatus] | None,
            strawberry.argument(
                description="Only these statuses (one or several; each at most once). Omitted: every status."
            ),
        ] = None,
        updated_since: Annotated[
            datetime | None,
            strawberry.argument(
                description="Only those created or changed at or after this instant (with a time zone offset); "
                "the window `from`/`to` still bounds them. To follow changes, prefer `appointmentChanges`."
            ),
        ] = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[Appointment]:
        ctx = info.context
        if status is not None and statuses is not None:
            raise bad_input("Give `statuses` (or the deprecated `status`), not both.", argument="statuses")
        chosen = [status] if status is not None else statuses
        if chosen is not None and len(chosen) > len(set(chosen)):
            raise bad_input("`statuses` names each status at most once.", argument="statuses")
        asked = reads.AppointmentsAsked(practice_id, from_, to, practitioner_id, chosen, updated_since)
        page = await reads.appointments(ctx.uow, ctx.cursors, asked, page_slice(first, after, last, before))
        fields = await ctx.fields.record_fields({row.practice_id for row in page.rows})
        return Connection.of(page, lambda row: Appointment.from_row(row, fields[row.practice_id], ctx))

    @strawberry.field(
        description="Any object by its global id. NOT_FOUND when missing or not visible to you.",
        extensions=[ValidatedInput()],
    )
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="Global id.", directives=[constraints.ID])],
    ) -> Node | None:
        return await _node(info.context, id)

    @strawberry.field(
        description=f"Several objects by global id (at most {MAX_NODES}); null where not found.",
        directives=[ListSize(slicing_arguments=["ids"])],
        extensions=[ValidatedInput()],
    )
    async def nodes(
        self,
        info: Info,
        ids: Annotated[
            list[strawberry.ID], strawberry.argument(description="Global ids.", directives=[constraints.ID])
        ],
    ) -> list[Node | None]:
        if not 1 <= len(ids) <= MAX_NODES:
            raise bad_input(f"`ids` holds 1 to {MAX_NODES} ids.", argument="ids")
        found = await reads.find_nodes(info.context.uow, ids)
        # Built together, so that the loaders batch them: a practice's new patients pass the
        # distinct-patient budget as one admission, as a page's do. Each id once: the same patient
        # twice would be the refusal once and null once (`Loaders.patient`), and one could hide the other.
        distinct = [i for i in dict.fromkeys(ids) if i in found]
        built = await asyncio.gather(*(_built(info.context, *found[i]) for i in distinct), return_exceptions=True)
        nodes = dict(zip(distinct, built, strict=True))
        results: list[Node | None] = []
        for public_id in ids:
            node = nodes.get(public_id)  # a missing node is null, like GitHub's API
            if isinstance(node, BaseException):
                if not isinstance(node, ApiError) or node.extensions["code"] != ErrorCode.NOT_FOUND:
                    raise node  # e.g. the distinct-patient budget: refuse, do not hide it as missing
                node = None
            results.append(node)
        return results
