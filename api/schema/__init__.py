"""The GraphQL schema: one module per area, assembled here."""

import strawberry

from api.schema.query import Query

schema = strawberry.Schema(query=Query)
