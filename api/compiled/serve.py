"""A registered document, or an open key's text, run through its compiled plan: priced and charged
as the general path does it (api/protection/cost_and_budget.py), then run (an appointments page read
in one statement, api/compiled/page_run.py, else through the resolvers, api/compiled/runner.py),
then its actual cost computed from the data sent and the rest refunded."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError, GraphQLSchema, located_error
from graphql.execution.values import VariableValues, get_variable_values
from strawberry.types import ExecutionResult

from api.compiled.page_plan import PagePlan
from api.compiled.page_run import Declined, read_page
from api.compiled.plan import Fallback, Plan
from api.compiled.runner import Execution
from api.errors import ApiError
from api.protection.cost import CostModel
from api.protection.cost_and_budget import charge_budget, settle
from api.schema.context import GraphQLContext

__all__ = ["run_plan"]


async def run_plan(
    schema: GraphQLSchema,
    plan: Plan | Fallback | None,
    worst_case: int | None,
    context: GraphQLContext,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    dry_run: bool,
    metered: bool = True,
) -> ExecutionResult | None:
    """The result of a document's plan, or None when the general executor must run it: no plan,
    another operation named, a dry run, or variables that do not coerce (it reports those).
    `worst_case`: a registered document's price; None prices an ad-hoc one with its variables.
    `metered`: priced and charged, as on a schema with CostAndBudget."""
    if not isinstance(plan, Plan) or dry_run:  # a dry run runs nothing: api/documents/dry_run.py answers it
        return None
    operation = plan.operation
    named = operation.name.value if operation.name else None
    if operation_name is not None and operation_name != named:
        return None
    coerced = get_variable_values(schema, operation.variable_definitions or (), variables or {}, hide_suggestions=True)
    if isinstance(coerced, list):
        return None
    if not metered:
        data, errors = await execute_plan(schema, plan, coerced, context)
        return ExecutionResult(data=data, errors=errors or None)
    context.metering.operation_name = named
    model = CostModel.of(schema)
    try:
        requested = worst_case if worst_case is not None else model.requested_cost(operation, {}, coerced.coerced)
    except ApiError as error:  # as CostAndBudget refuses a price it cannot compute
        return _with_cost(ExecutionResult(data=None, errors=[GraphQLError(str(error), original_error=error)]), context)
    refusal, charge = await charge_budget(context, requested)
    if refusal is not None or charge is None:
        return _with_cost(ExecutionResult(data=None, errors=refusal.errors if refusal else None), context)
    data, errors = await execute_plan(schema, plan, coerced, context)
    result = ExecutionResult(data=data, errors=errors or None)
    settle(context, model, operation, {}, coerced.coerced, requested, charge, result)
    return _with_cost(result, context)


async def execute_plan(
    schema: GraphQLSchema, plan: Plan, variables: VariableValues, context: GraphQLContext
) -> tuple[dict[str, Any] | None, list[GraphQLError]]:
    """The plan's data and errors: its page in one statement when it is one, else through the resolvers."""
    page = plan.page
    if isinstance(page, PagePlan):
        try:
            return await read_page(page, context, variables)
        except Declined:
            pass
        except Exception as error:  # as the resolver's failure: the (non-null) root is null, with its error
            return None, [located_error(error, [page.root.node], [page.root_key])]
    return await Execution(schema, plan, variables, context).run()


def _with_cost(result: ExecutionResult, context: GraphQLContext) -> ExecutionResult:
    """The `cost` response extension, as CostAndBudget gives it."""
    cost = context.metering.cost
    result.extensions = {"cost": cost} if cost else None
    return result
