

import strawberry

from api.data import models
from api.protection.input_validation import ValidatedInput
from api.schema.context import GraphQLContext
from api.schema.guard import build, require
from api.schema.relay import PAGED, After, Before, Connection, First, Last, Node, page_slice


@strawberry.type(description="A practitioner at one practice. The id names the practitioner at this practice only.")
class Practitioner(Node):
    readable: strawberry.Private[frozenset[str]]
    first_name: str | None = strawberry.field(description="First name.")
    last_name: str | None = strawberry.field(description="Last name.")
    specialty: str | None = strawberry.field(description="Medical specialty, in French (e.g. « dentiste »).")
    rpps: str | None = strawberry.field(description="National professional id (RPPS, 11 digits).")

    @classmethod
    def from_row(cls, membership: models.PracticeMembership, readable: frozenset[str]) -> "Practitioner":
        person = membership.practitioner
        return build(
            cls, readable, id=membership.public_id, first_name=person.first_name, last_name=person.last_name,
            specialty=person.specialty, rpps=person.rpps,
        )


@strawberry.type(description="A medical office or health establishment that granted you access.")
class Practice(Node):
    readable: strawberry.Private[frozenset[str]]
    internal_id: strawberry.Private[int]
    name: str | None = strawberry.field(description="Name of the practice.")
    address: str | None = strawberry.field(description="Postal address.")
    timezone: str | None = strawberry.field(description="IANA time zone of the practice, e.g. Europe/Paris.")

    @classmethod
    def from_row(cls, practice: models.Practice, readable: frozenset[str]) -> "Practice":
        return build(
            cls, readable, internal_id=practice.id, id=practice.public_id, name=practice.name,
            address=practice.address, timezone=practice.timezone,
        )

    @strawberry.field(
        description="Practitioners working at this practice, ordered by id. Needs appointments:read.",
        directives=[PAGED],
        extensions=[ValidatedInput()],
    )
    async def practitioners(
        self,
        info: strawberry.Info[GraphQLContext, None],
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[Practitioner] | None:
        require(self, "Practice.practitioners")
        ctx = info.context
        page = await ctx.loaders.practitioner_pages.load((self.internal_id, page_slice(first, after, last, before)))
        return Connection.of(page, lambda row: Practitioner.from_row(row, self.readable))
