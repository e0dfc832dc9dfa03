"""Prices every operation before it runs and charges the partner's budget.

Runs at execution time, with the request's variables, so that a cached document is priced anew
with every set of variables. A refusal happens before any resolver touches the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from graphql import (
    DocumentNode,
    ExecutionResult,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
)
from graphql.execution.values import get_variable_values
from strawberry.extensions import SchemaExtension

from api.errors import ApiError, ErrorCode
from api.identity.request_identity import RequestIdentity
from api.protection.budgets import Budgets, Charge, Throttle
from api.protection.cost import OPERATION_COST, CostModel
from api.protection.rate_limit_agreement import agree_with_throttle
from api.services.unit_of_work import UnitOfWork
from api.settings import Settings

__all__ = ["CostAndBudget", "Metered", "Metering", "PreparedDocument", "charge_budget", "settle"]


@dataclass
class Metering:
    """What pricing and charging decided for one request, read by the pipeline for the ledger,
    the refund and the per-key gate."""

    operation_name: str | None = None  # the operation executed, as named in the document
    cost: dict[str, Any] | None = None  # the `cost` response extension
    charged: int = 0  # points taken from the budget
    refund: int = 0  # points taken but not spent, given back with the ledger write
    retry_after: int | None = None  # seconds, when the budget refused the operation
    document_id: str | None = None  # the registered document run, when the request named one
    dry_run: dict[str, Any] | None = None  # the `dryRun` response extension: nothing was run (a point charged)
    throttle: Throttle | None = None  # the bucket as the charge read it (the per-partner gate's cool-down)

    @property
    def requested(self) -> int | None:
        return (self.cost or {}).get("requestedQueryCost")

    @property
    def actual(self) -> int | None:
        return (self.cost or {}).get("actualQueryCost")


class PreparedDocument(Protocol):
    """A registered document (api/documents/registry.py): parsed, validated and priced once."""

    @property
    def document(self) -> DocumentNode: ...

    @property
    def cost(self) -> int: ...  # its worst case, whatever the variables


class Metered(Protocol):
    """What this extension needs of the execution context (api.schema.context.GraphQLContext)."""

    identity: RequestIdentity
    uow: UnitOfWork
    budgets: Budgets
    settings: Settings
    metering: Metering
    document: PreparedDocument | None


async def charge_budget(ctx: Metered, requested: int) -> tuple[ExecutionResult | None, Charge | None]:
    """Refuses a price above the maximum, then takes it from the partner's budget: (refusal, None)
    or (None, the charge). The compiled plans (api/compiled/) charge through here too."""
    metering = ctx.metering
    maximum = ctx.settings.max_query_cost
    if requested > maximum:
        metering.cost = {"requestedQueryCost": requested, "maximumQueryCost": maximum}
        refusal = ApiError(
            ErrorCode.COST_LIMIT_EXCEEDED,
            f"This operation costs {requested} points; the maximum is {maximum}. Ask for smaller pages or "
            f"fewer fields.",
            cost=requested,
            maximum=maximum,
        )
        return _refusal(refusal), None
    async with ctx.uow.transaction() as session:
        now = ctx.identity.request_time.timestamp()
        charge = await ctx.budgets.take(session, ctx.identity.principal, requested, now)
    if not charge.granted:
        metering.retry_after, metering.throttle = charge.retry_after, charge.throttle
        metering.cost = {"requestedQueryCost": requested, "throttleStatus": charge.throttle.as_extension()}
        limited = ApiError(
            ErrorCode.RATE_LIMITED,
            f"Your budget holds {int(charge.throttle.currently_available)} points and this operation costs "
            f"{requested}; retry in {charge.retry_after} s.",
            retryAfter=charge.retry_after,
        )
        return _refusal(limited), None
    metering.charged = requested
    # what the ledger records if the operation never ends (timeout)
    metering.cost = {"requestedQueryCost": requested}
    return None, charge


def settle(
    ctx: Metered,
    model: CostModel,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    requested: int,
    charge: Charge,
    result: Any,
) -> None:
    """After execution: the actual cost, from the data sent, and the refund of the rest."""
    metering = ctx.metering
    data = getattr(result, "data", None)
    actual = min(requested, model.actual_cost(operation, fragments, variables, data))
    metering.refund = requested - actual  # given back in the ledger's transaction: one write less per request
    throttle = metering.throttle = charge.throttle.refunded(metering.refund)
    status = throttle.as_extension()
    metering.cost = {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": status}
    if operation.operation == OperationType.QUERY and isinstance(data, dict):
        agree_with_throttle(data, operation.selection_set, fragments, int(status["currentlyAvailable"]))


def _refusal(error: ApiError) -> ExecutionResult:
    return ExecutionResult(data=None, errors=[GraphQLError(str(error), original_error=error)])


class CostAndBudget(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        self.model = CostModel.of(execution.schema._schema)
        ctx: Metered = execution.context
        metering = ctx.metering
        document = execution.graphql_document
        operation = get_operation_ast(document, execution.operation_name) if document else None
        if operation is None:
            yield
            return
        if metering.dry_run is not None:  # priced, nothing run (api/documents/dry_run.py)
            # It costs the least operation's price: free, one key sent 134 a second, each recorded in the
            # ledger, and its budget never moved (outside review, helper 53).
            refusal, charge = await charge_budget(ctx, OPERATION_COST)
            if refusal is not None or charge is None:  # refused as any operation, without the price it asked for
                metering.dry_run, execution.result = None, refusal
            else:
                settle(ctx, self.model, operation, {}, {}, OPERATION_COST, charge, execution.result)
            yield
            return
        metering.operation_name = operation.name.value if operation.name else None
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}  # type: ignore[union-attr]  # a fragment has a name
        # Priced with the variables as the execution will see them: defaults applied, a single value
        # where a list is declared made a list. Variables that do not coerce are refused by
        # graphql-core before any resolver runs, so there is nothing to price or charge.
        coerced = get_variable_values(
            execution.schema._schema,
            operation.variable_definitions or (),
            execution.variables or {},
            hide_suggestions=True,
        )
        if isinstance(coerced, list):
            yield
            return
        variables: dict[str, Any] = coerced.coerced
        try:
            # A registered document was priced when registered, at its worst case (and within the maximum).
            requested = (
                ctx.document.cost if ctx.document else self.model.requested_cost(operation, fragments, variables)
            )
        except ApiError as error:
            execution.result = _refusal(error)
            yield
            return
        refusal, charge = await charge_budget(ctx, requested)
        if refusal is not None or charge is None:
            execution.result = refusal
            yield
            return
        yield
        settle(ctx, self.model, operation, fragments, variables, requested, charge, execution.result)

    def get_results(self) -> dict[str, Any]:
        metering = self.execution_context.context.metering
        cost = {"cost": metering.cost} if metering.cost else {}
        if metering.dry_run is not None:
            return {"dryRun": metering.dry_run, **cost}
        return cost
