"""A registered document run through its compiled plan: priced and charged as the general path
does it (api/protection/cost_and_budget.py), then run (api/compiled/runner.py), then its actual
cost computed from the data sent and the rest refunded."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLSchema
from graphql.execution.values import get_variable_values
from strawberry.types import ExecutionResult

from api.compiled.plan import Plan
from api.compiled.runner import Execution
from api.documents.registry import RegisteredDocument
from api.protection.cost import CostModel
from api.protection.cost_and_budget import charge_budget, settle
from api.schema.context import GraphQLContext

__all__ = ["run_plan"]


async def run_plan(
    schema: GraphQLSchema,
    document: RegisteredDocument,
    context: GraphQLContext,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    dry_run: bool,
) -> ExecutionResult | None:
    """The result of the document's plan, or None when the general executor must run it: no plan,
    another operation named, a dry run, or variables that do not coerce (it reports those)."""
    plan = document.plan
    if not isinstance(plan, Plan) or dry_run:  # a dry run runs nothing: api/documents/dry_run.py answers it
        return None
    if operation_name is not None and operation_name != document.operation_name:
        return None
    operation = plan.operation
    coerced = get_variable_values(schema, operation.variable_definitions or (), variables or {}, hide_suggestions=True)
    if isinstance(coerced, list):
        return None
    metering = context.metering
    metering.operation_name = document.operation_name
    refusal, charge = await charge_budget(context, document.cost)
    if refusal is not None or charge is None:
        return _with_cost(ExecutionResult(data=None, errors=refusal.errors if refusal else None), context)
    data, errors = await Execution(schema, plan, coerced, context).run()
    result = ExecutionResult(data=data, errors=errors or None)
    settle(context, CostModel.of(schema), operation, {}, coerced.coerced, document.cost, charge, result)
    return _with_cost(result, context)


def _with_cost(result: ExecutionResult, context: GraphQLContext) -> ExecutionResult:
    """The `cost` response extension, as CostAndBudget gives it."""
    cost = context.metering.cost
    result.extensions = {"cost": cost} if cost else None
    return result
