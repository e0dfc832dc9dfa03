"""`extensions: {"dryRun": true}`: what an operation would cost and need, without running it.

The answer (`extensions.dryRun`, with `data: null`) gives the requested cost (its worst case while
the variables are incomplete, as when editing in GraphiQL), the fields and scopes the document
reads, and those the key's grants lack. No resolver runs and nothing is disclosed; the dry run itself
costs the least operation's point (api/protection/cost_and_budget.py); the access ledger records the
request as `dry_run`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from graphql import ExecutionResult, FragmentDefinitionNode, get_operation_ast
from graphql.execution.values import get_variable_values
from strawberry.extensions import SchemaExtension

from api.documents.analysis import LARGEST_LIST, selected_fields
from api.errors import ApiError
from api.protection.cost import CostModel
from api.schema.context import GraphQLContext

__all__ = ["DryRun", "wants_dry_run"]


def wants_dry_run(extensions: dict[str, Any] | None) -> bool:
    return bool(extensions) and extensions.get("dryRun") is True  # type: ignore[union-attr]  # not None here


class DryRun(SchemaExtension):
    """Placed before the price and the budget (api/protection/cost_and_budget.py), which then charge the
    dry run's own point, not the operation's price."""

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        document = execution.graphql_document
        operation = get_operation_ast(document, execution.operation_name) if document else None
        if not wants_dry_run(execution.operation_extensions) or document is None or operation is None:
            yield
            return
        ctx: GraphQLContext = execution.context
        schema = execution.schema._schema
        model = CostModel.of(schema)
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        requested: int | None
        worst: int | None
        try:
            worst = ctx.document.cost if ctx.document else model.worst_case_cost(operation, fragments, LARGEST_LIST)
            coerced = get_variable_values(
                schema, operation.variable_definitions or (), execution.variables or {}, hide_suggestions=True
            )
            # incomplete variables (still editing): the worst case
            requested = (
                worst if isinstance(coerced, list) else model.requested_cost(operation, fragments, coerced.coerced)
            )
        except ApiError as error:  # e.g. a list without its size: said as the run would say it
            requested = worst = None
            problem: str | None = str(error)
        else:
            problem = None
        rules = ctx.uow.authorizer.field_rules
        readable = await ctx.fields.anywhere()
        fields = selected_fields(schema, document)
        lacking = [
            alternatives
            for alternatives in fields
            if alternatives and all(rules.unreadable(f, readable) for f in alternatives)
        ]
        needed = sorted({f for alternatives in fields for f in alternatives if not rules.is_free(f)})
        ctx.metering.operation_name = operation.name.value if operation.name else None
        ctx.metering.dry_run = {
            "documentId": ctx.metering.document_id,
            "requestedQueryCost": requested,
            "worstCaseQueryCost": worst,
            "maximumQueryCost": ctx.settings.max_query_cost,
            "fields": needed,
            "scopes": sorted({" or ".join(sorted(rules.scopes_of(f))) for f in needed if rules.scopes_of(f)}),
            "missingFields": sorted({f for alternatives in lacking for f in alternatives}),
            "missingScopes": sorted(
                {" or ".join(sorted(rules.scopes_of(f))) for a in lacking for f in a if rules.scopes_of(f)}
            ),
            **({"problem": problem} if problem else {}),
        }
        execution.result = ExecutionResult(data=None)  # nothing runs
        yield
