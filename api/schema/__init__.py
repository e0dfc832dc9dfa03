"""The GraphQL schema: one module per area, assembled here."""


import strawberry
from strawberry.schema.config import StrawberryConfig
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from api.schema.appointments import Appointment, Patient
from api.schema.guard import resolve_field
from api.schema.practices import Practice, Practitioner
from api.schema.query import Query


class PartnerSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Refusals and bad input are the client's business; only unexpected failures are logged
        # (by api.graphql_view, with the request id).
        return None


schema = PartnerSchema(
    query=Query,
    types=[Appointment, Patient, Practice, Practitioner],
    config=StrawberryConfig(default_resolver=resolve_field),
)
