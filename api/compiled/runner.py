"""Runs a compiled plan (api/compiled/plan.py) for one request.

Every value still comes from the schema's own resolvers: the root field's resolver reads through
the services with the policy's row filter and the reading horizon (api/services/reads.py), builds
the objects with their field masks (api/schema/guard.py), and the patient loader passes the
distinct-patient budget (api/protection/extraction.py); the default resolver refuses forbidden
fields and records what the response carries for the ledger. What the plan saves is graphql-core's
work per request: collecting fields, merging selections, building resolve infos for plain fields.
Its completion follows graphql-core's executor step for step (the order in which fields run and
awaitables are gathered, null propagation, where an error is located and which errors a nulled
parent drops), so that errors come in the same order; the differential test
(tests/compiled/test_differential.py) holds it to that.
"""

from __future__ import annotations

from asyncio import gather
from collections.abc import Awaitable
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    Undefined,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    located_error,
)
from graphql.execution.executor import CollectedErrors
from graphql.execution.values import VariableValues, get_argument_values
from graphql.pyutils import Path, gather_with_cancel, inspect
from graphql.pyutils import is_awaitable as isawaitable
from graphql.type.definition import GraphQLResolveInfoHelpers

from api.compiled.plan import FieldPlan, Plan

__all__ = ["Execution"]


def _settle(awaitables: list[Awaitable[Any]]) -> None:
    gather(*awaitables, return_exceptions=True)


_HELPERS = GraphQLResolveInfoHelpers(gather=lambda awaitables: gather_with_cancel(*awaitables), track=_settle)  # type: ignore[arg-type]  # a list of awaitables


class Execution:
    """One run of a plan: its data and its errors, as graphql-core's executor would give them."""

    def __init__(self, schema: GraphQLSchema, plan: Plan, variables: VariableValues, context: Any) -> None:
        self.schema, self.plan, self.variables, self.context = schema, plan, variables, context
        self.errors = CollectedErrors()

    async def run(self) -> tuple[dict[str, Any] | None, list[GraphQLError]]:
        query = self.schema.query_type
        assert query is not None
        try:
            data: Any = self.execute_fields(self.plan.fields, None, None)
            if isawaitable(data):
                data = await data
        except GraphQLError as error:  # a non-null root field failed: no data
            self.errors.add(error, None)
            data = None
        return data, self.errors.errors

    def execute_fields(self, fields: tuple[FieldPlan, ...], source: Any, path: Path | None) -> Any:
        results: dict[str, Any] = {}
        awaitable_fields: list[str] = []
        try:
            for field in fields:
                result = self.execute_field(field, source, Path(path, field.key, field.parent.name))
                results[field.key] = result
                if isawaitable(result):
                    awaitable_fields.append(field.key)
        except Exception:
            if awaitable_fields:
                _settle([results[key] for key in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                key = awaitable_fields[0]
                results[key] = await results[key]
            else:
                awaited = await gather_with_cancel(*(results[key] for key in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    def info(self, field: FieldPlan, path: Path) -> GraphQLResolveInfo[Any]:
        return GraphQLResolveInfo(
            field.node.name.value,
            [field.node],
            field.return_type,
            field.parent,
            path,
            self.schema,
            {},
            None,
            self.plan.operation,
            self.variables,
            self.context,
            isawaitable,
            None,
            _HELPERS,
        )

    def execute_field(self, field: FieldPlan, source: Any, path: Path) -> Any:
        definition = field.definition
        if definition is None:  # __typename
            return field.parent.name
        try:
            if field.basic:  # strawberry's plain field: its default resolver, which reads no info
                result = definition.resolve(source, None)  # type: ignore[misc]  # every schema field has one
            else:
                args = (
                    get_argument_values(definition, field.node, self.variables, None, True)
                    if definition.args or field.node.arguments
                    else {}
                )
                result = definition.resolve(source, self.info(field, path), **args)  # type: ignore[misc]
            if isawaitable(result):
                return self.complete_awaitable_value(field.return_type, field, path, result)
            completed = self.complete_value(field.return_type, field, path, result)
            if isawaitable(completed):

                async def await_completed() -> Any:
                    try:
                        return await completed
                    except Exception as raw_error:
                        self.handle_field_error(raw_error, field.return_type, field, path)
                        return None

                return await_completed()
        except Exception as raw_error:
            self.handle_field_error(raw_error, field.return_type, field, path)
            return None
        return completed

    def handle_field_error(
        self, raw_error: Exception, return_type: GraphQLOutputType, field: FieldPlan, path: Path
    ) -> None:
        error = located_error(raw_error, [field.node], path.as_list())
        if is_non_null_type(return_type):
            raise error
        self.errors.add(error, path)

    async def complete_awaitable_value(
        self, return_type: GraphQLOutputType, field: FieldPlan, path: Path, result: Any
    ) -> Any:
        try:
            resolved = await result
            completed = self.complete_value(return_type, field, path, resolved)
            if isawaitable(completed):
                completed = await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field, path)
            completed = None
        return completed

    def complete_value(self, return_type: GraphQLOutputType, field: FieldPlan, path: Path, result: Any) -> Any:
        if isinstance(result, Exception):
            raise result
        if isinstance(return_type, GraphQLNonNull):
            completed = self.complete_value(return_type.of_type, field, path, result)
            if completed is None:
                raise TypeError(
                    f"Cannot return null for non-nullable field {field.parent}.{field.node.name.value}."
                )
            return completed
        if result is None or result is Undefined:
            return None
        if is_list_type(return_type):
            return self.complete_list_value(return_type, field, path, result)
        if is_leaf_type(return_type):
            coerced = return_type.coerce_output_value(result)
            if coerced is Undefined or coerced is None:
                raise TypeError(
                    f"Expected `{inspect(return_type)}.coerce_output_value({inspect(result)})` to return "
                    f"non-nullable value, returned: {inspect(coerced)}"
                )
            return coerced
        assert isinstance(return_type, GraphQLObjectType)  # the compiler admits no abstract type
        if return_type.is_type_of and not return_type.is_type_of(result, self.info(field, path)):
            raise GraphQLError(
                f"Expected value of type '{return_type.name}' but got: {inspect(result)}.", [field.node]
            )
        return self.execute_fields(field.children, result, path)

    def complete_list_value(
        self, return_type: GraphQLList[GraphQLOutputType], field: FieldPlan, path: Path, items: Any
    ) -> Any:
        item_type = return_type.of_type
        completed_results: list[Any] = []
        awaitable_indices: list[int] = []
        try:
            for index, item in enumerate(items):
                item_path = path.add_key(index, None)
                if self.complete_list_item_value(item, completed_results, item_type, field, item_path):
                    awaitable_indices.append(index)
        except Exception:
            if awaitable_indices:
                _settle([completed_results[index] for index in awaitable_indices])
            raise
        if not awaitable_indices:
            return completed_results

        async def get_completed_results() -> list[Any]:
            if len(awaitable_indices) == 1:
                index = awaitable_indices[0]
                completed_results[index] = await completed_results[index]
            else:
                awaited = await gather_with_cancel(*(completed_results[index] for index in awaitable_indices))
                for index, sub_result in zip(awaitable_indices, awaited, strict=True):
                    completed_results[index] = sub_result
            return completed_results

        return get_completed_results()

    def complete_list_item_value(
        self, item: Any, completed_results: list[Any], item_type: GraphQLOutputType, field: FieldPlan, item_path: Path
    ) -> bool:
        try:
            completed_item = self.complete_value(item_type, field, item_path, item)
            if isawaitable(completed_item):

                async def await_completed() -> Any:
                    try:
                        return await completed_item
                    except Exception as raw_error:
                        self.handle_field_error(raw_error, item_type, field, item_path)
                        return None

                completed_results.append(await_completed())
                return True
            completed_results.append(completed_item)
        except Exception as raw_error:
            self.handle_field_error(raw_error, item_type, field, item_path)
            completed_results.append(None)
        return False
