"""The GraphQL schema: one module per area, assembled here with the API's extensions."""

from functools import cache
from typing import Any

from graphql import GraphQLError
from strawberry import Schema
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from api.documents.dry_run import DryRun
from api.protection.cost_and_budget import CostAndBudget
from api.protection.shape_limits import CachedValidation, LimitedParsing, ValidationRules, limit_rules
from api.schema import requires_scopes
from api.schema.appointments import Appointment, Patient
from api.schema.errors import ErrorCodes
from api.schema.guard import resolve_field
from api.schema.mutations import Mutation
from api.schema.practices import Practice, Practitioner
from api.schema.query import Query
from api.schema.scalars import SCALAR_OVERRIDES
from api.settings import Settings
from authz.engine import Authorizer


class PartnerSchema(Schema):
    # The parsing and validation its extensions apply (set by `build_schema`): compiled plans of texts
    # (api/compiled/ad_hoc.py) pass a text only under these very limits.
    max_tokens: int
    rules: ValidationRules

    def _get_custom_context_kwargs(
        self, operation_extensions: dict[str, Any] | None = None, *, sync: bool = False
    ) -> dict[str, Any]:
        # Suggestions ("Did you mean 'newPatient'?") describe the schema to whoever probes it.
        # Validation is told so by api.protection.shape_limits; execution, which coerces the
        # variables (input fields, enum values), is told here: strawberry has no setting that
        # reaches graphql-core's `execute(hide_suggestions=)`, and this hook is what it passes on.
        return {**super()._get_custom_context_kwargs(operation_extensions, sync=sync), "hide_suggestions": True}

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Refusals and bad input are the client's business; unexpected failures are logged by
        # api.http.graphql_view, with the request id.
        return None


def build_schema(settings: Settings, cost_analysis: bool = True) -> PartnerSchema:
    """The schema with its extensions; `cost_analysis=False` only serves to measure what it costs.

    The extensions run in this order, inside step 4 (`execute`) of api/http/pipeline.py: parsing
    under the token and nesting limits, with its cache; validation, our shape limits first
    (api/protection/shape_limits.py and rules/: operations, depth, aliases, selections,
    directives), then the specification's rules (a registered document skips parsing and validation,
    done once); then a dry run's report, which stops there (api/documents/dry_run.py); then the
    price and the budget charge (api/protection/cost_and_budget.py, before any resolver runs).
    """
    rules = limit_rules(settings)  # built once, so the validation cache keeps hitting
    built = PartnerSchema(
        query=Query,
        mutation=Mutation,
        types=[Appointment, Patient, Practice, Practitioner, ErrorCodes],
        config=StrawberryConfig(default_resolver=resolve_field),
        scalar_overrides=SCALAR_OVERRIDES,
        extensions=[
            lambda: LimitedParsing(settings.max_tokens),
            lambda: CachedValidation(rules),
            DryRun,
            *([CostAndBudget] if cost_analysis else []),
        ],
    )
    requires_scopes.annotate(built._schema.type_map, _policy_field_scopes())
    # Put on after the build, its definition is not among the schema's directives unless added: live
    # introspection lacked it, which graphql-js's findBreakingChanges(schema.graphql, live) reported.
    defined = built.schema_converter.from_schema_directive(requires_scopes.RequiresScopes)
    built._schema.directives = (*built._schema.directives, defined)
    built.max_tokens, built.rules = settings.max_tokens, rules
    return built


@cache
def _policy_field_scopes() -> dict[str, frozenset[str]]:
    """The policy's `field_needs_scope` table (authz/fields.polar), loaded once per process."""
    return Authorizer().field_scopes


schema = build_schema(Settings())
