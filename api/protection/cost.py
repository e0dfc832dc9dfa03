"""Static query cost, following the IBM GraphQL cost directive semantics (as Apollo uses them).

- A field returning an object costs 1, a scalar or enum 0, unless `@cost(weight:)` says
  otherwise on the field or on the returned type (personal data and mutations cost more;
  connections and page info cost nothing of their own; an edge costs 1, the row it reads, and
  its node nothing more, so that a page costs its rows whatever it selects of them).
- A list field costs its weight and its children's once per item, the number of items being
  its slicing argument (`@listSize(slicingArguments: ["first", "last"])`, exactly one given:
  `requireOneSlicingArgument`),
  applied to `sizedFields` (a connection's `edges`) when given; a list of ids is as long as
  the list; other lists use `assumedSize`.
- On an abstract type (`node`), the most expensive possible type counts.
- An operation costs at least `OPERATION_COST`, whatever it selects and whatever it answers
  (as GitHub's GraphQL API prices a call at one point at least).

`requested_cost` prices a document with its variables before anything runs; `actual_cost`
prices what a response really contained (the same rules, real list lengths, an item answered null
costing its lookup); `worst_case_cost`
prices it for any variables, each list a variable sizes at its largest (a trusted document's
price, fixed when it is registered: api/documents/).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLCompositeType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    ValueNode,
    VariableNode,
    get_named_type,
    is_abstract_type,
    value_from_ast_untyped,
)
from strawberry.schema_directive import Location

from api.errors import bad_input

DEFAULT_ASSUMED_SIZE = 100
# Every operation is work whatever it selects (its key's check, its round trips, its ledger row): a
# page's `pageInfo` alone, or `__typename`, costing nothing, could be sent without end on no budget.
OPERATION_COST = 1
# Personal data costs more than the rest: reading it in bulk is what must be expensive.
IDENTITY_COST = 1
CONTACT_COST = 1
HEALTH_COST = 1
# A connection's `totalCount` runs one COUNT over the whole (bounded) list: priced as a page's query.
TOTAL_COUNT_COST = 10
# Introspection builds its answer in the worker, the whole schema for `__schema` (tens of kilobytes,
# milliseconds of CPU): priced as the page of rows it costs as much as, so that aliases of it are too.
INTROSPECTION_COSTS = {"__schema": 100, "__type": 5}


# Both directives are declared as Apollo's cost spec (https://specs.apollo.dev/cost) and IBM's
# GraphQL Cost Directives Specification define them, locations and arguments alike, so that
# tools reading them understand this schema; this API uses the locations its types need.
@strawberry.schema_directive(
    locations=[
        Location.ARGUMENT_DEFINITION,
        Location.ENUM,
        Location.FIELD_DEFINITION,
        Location.INPUT_FIELD_DEFINITION,
        Location.OBJECT,
        Location.SCALAR,
    ],
    description="Cost of the field, or of every field returning this type, in points.",
)
class Cost:
    weight: int


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="listSize",
    description="How many items a list field returns: the value of its slicing argument (exactly one of them "
    "when `requireOneSlicingArgument`), or `assumedSize`. `sizedFields`: the fields of the returned object that "
    "hold the items (a connection's `edges`).",
)
class ListSize:
    assumed_size: int | None = strawberry.directive_field(name="assumedSize", default=None)
    slicing_arguments: list[str] | None = strawberry.directive_field(name="slicingArguments", default=None)
    sized_fields: list[str] | None = strawberry.directive_field(name="sizedFields", default=None)
    require_one_slicing_argument: bool | None = strawberry.directive_field(
        name="requireOneSlicingArgument", default=True
    )


@dataclass(frozen=True)
class FieldCost:
    weight: int
    list_size: ListSize | None


class CostModel:
    """The weights of one schema, read once from its directives."""

    _models: ClassVar[dict[int, CostModel]] = {}

    @classmethod
    def of(cls, schema: GraphQLSchema) -> CostModel:
        model = cls._models.get(id(schema))
        if model is None or model.schema is not schema:
            model = cls._models[id(schema)] = cls(schema)
        return model

    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        self.fields: dict[tuple[str, str], FieldCost] = {}
        for type_name, graphql_type in schema.type_map.items():
            if type_name.startswith("__") or not hasattr(graphql_type, "fields"):
                continue
            for field_name, field in graphql_type.fields.items():
                definition = field.extensions.get("strawberry-definition")
                directives = list(getattr(definition, "directives", []) or [])
                returned = get_named_type(field.type)
                returned_definition = returned.extensions.get("strawberry-definition")
                weight = 1 if isinstance(returned, GraphQLCompositeType) else 0
                for directive in getattr(returned_definition, "directives", []) or []:
                    if isinstance(directive, Cost):
                        weight = directive.weight
                list_size = None
                for directive in directives:
                    if isinstance(directive, Cost):
                        weight = directive.weight
                    elif isinstance(directive, ListSize):
                        list_size = directive
                self.fields[(type_name, field_name)] = FieldCost(weight, list_size)

    def requested_cost(
        self,
        operation: OperationDefinitionNode,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
    ) -> int:
        """The price of the operation, before it runs."""
        root = self.schema.get_root_type(operation.operation)
        assert root is not None
        cost = _Pricer(self, fragments, variables).selection_cost(root, operation.selection_set, None)
        return max(OPERATION_COST, cost)

    def worst_case_cost(
        self,
        operation: OperationDefinitionNode,
        fragments: Mapping[str, FragmentDefinitionNode],
        largest_list: int,
    ) -> int:
        """The price of the operation whatever its variables: a list sized by a variable counts
        `largest_list` items (the most a page or an id list may hold)."""
        root = self.schema.get_root_type(operation.operation)
        assert root is not None
        cost = _Pricer(self, fragments, {}, largest_list).selection_cost(root, operation.selection_set, None)
        return max(OPERATION_COST, cost)

    def actual_cost(
        self,
        operation: OperationDefinitionNode,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        data: Mapping[str, Any] | None,
    ) -> int:
        """What the response really contained costs: its operation's floor when it has no data."""
        if data is None:
            return OPERATION_COST
        root = self.schema.get_root_type(operation.operation)
        assert root is not None
        cost = _Pricer(self, fragments, variables).actual_cost(root, operation.selection_set, data)
        return max(OPERATION_COST, cost)


Plan = list[tuple[str, int, bool, Any, SelectionSetNode | None]]
Sizing = tuple[tuple[str, ...], int] | None  # the fields of a connection that are its items, and how many


class _Pricer:
    """Prices one operation. Every price and plan is kept per (type, selection set): a fragment is
    priced once per type it applies to, however often it is spread, so the work is linear in the
    document (a fragment spread twice per level is not expanded)."""

    def __init__(
        self,
        model: CostModel,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        largest_list: int | None = None,
    ) -> None:
        # A dict: graphql-core's value_from_ast_untyped takes no other mapping.
        self.model, self.fragments, self.variables = model, fragments, dict(variables)
        self.largest_list = largest_list  # set: variables are unknown, each sized list is at its largest
        self._costs: dict[tuple[str, int, Sizing], int] = {}
        # The fields of each selection on each type, fragments flattened: a response repeats the
        # same selection once per list item, so the actual cost resolves it once.
        self._plans: dict[tuple[str, int], Plan] = {}

    def selection_cost(self, parent: GraphQLCompositeType, selection_set: SelectionSetNode, data: Any) -> int:
        if is_abstract_type(parent):
            assert isinstance(parent, GraphQLAbstractType)
            possible = self.model.schema.get_possible_types(parent)
            return max((self._fields_cost(t, selection_set) for t in possible), default=0)
        assert isinstance(parent, GraphQLObjectType)
        return self._fields_cost(parent, selection_set)

    def actual_cost(
        self, parent: GraphQLCompositeType, selection_set: SelectionSetNode, data: Mapping[str, Any]
    ) -> int:
        if is_abstract_type(parent):
            assert isinstance(parent, GraphQLAbstractType)
            possible = self.model.schema.get_possible_types(parent)
            return max((self.actual_cost(t, selection_set, data) for t in possible), default=0)
        total = 0
        for key, weight, is_list, returned, children in self._plan(parent, selection_set):  # type: ignore[arg-type]  # parent: an object type here
            value = data.get(key)
            if value is None:
                continue
            if children is None:
                total += weight
                continue
            for item in value if is_list else (value,):
                total += weight  # an item answered null was looked up all the same (`nodes(ids:)` of missing ids)
                if item is not None:
                    total += self.actual_cost(returned, children, item)
        return total

    def _plan(self, parent: GraphQLObjectType, selection_set: SelectionSetNode) -> Plan:
        key = (parent.name, id(selection_set))  # the document outlives this pricer: ids are stable
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = []
            for selection in selection_set.selections:
                if not isinstance(selection, FieldNode):
                    applied = self._applied(parent, selection)
                    if applied is not None:
                        plan.extend(self._plan(parent, applied))  # built once per fragment and type
                    continue
                name = selection.name.value
                if name.startswith("__"):
                    if name in INTROSPECTION_COSTS:  # priced as a leaf: what it answers is not in the model
                        response_key = selection.alias.value if selection.alias else name
                        plan.append((response_key, INTROSPECTION_COSTS[name], False, parent, None))
                    continue
                field = parent.fields[name]
                returned = get_named_type(field.type)
                composite = selection.selection_set is not None and isinstance(returned, GraphQLCompositeType)
                plan.append(
                    (
                        selection.alias.value if selection.alias else name,
                        self.model.fields[(parent.name, name)].weight,
                        _is_list(field.type),
                        returned,
                        selection.selection_set if composite else None,
                    )
                )
        return plan

    def _applied(self, parent: GraphQLObjectType, selection: Any) -> SelectionSetNode | None:
        """The selection set of an inline fragment or a fragment spread, when it applies to `parent`."""
        if isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            if condition is None or self._applies(condition.name.value, parent):
                return selection.selection_set
            return None
        assert isinstance(selection, FragmentSpreadNode)
        fragment = self.fragments.get(selection.name.value)
        if fragment is not None and self._applies(fragment.type_condition.name.value, parent):
            return fragment.selection_set
        return None

    def _fields_cost(self, parent: GraphQLObjectType, selection_set: SelectionSetNode, sizing: Sizing = None) -> int:
        key = (parent.name, id(selection_set), sizing)
        cost = self._costs.get(key)
        if cost is None:
            cost = 0
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    size = sizing[1] if sizing is not None and selection.name.value in sizing[0] else None
                    cost += self._field_cost(parent, selection, size)
                else:
                    applied = self._applied(parent, selection)
                    if applied is not None:
                        cost += self._fields_cost(parent, applied, sizing)
            self._costs[key] = cost
        return cost

    def _applies(self, type_name: str, parent: GraphQLObjectType) -> bool:
        condition = self.model.schema.get_type(type_name)
        if condition is parent:
            return True
        return is_abstract_type(condition) and self.model.schema.is_sub_type(condition, parent)

    def _field_cost(self, parent: GraphQLObjectType, node: FieldNode, size: int | None = None) -> int:
        """Cost of one field; `size` is the length its list will have, when a parent decided it."""
        name = node.name.value
        if name.startswith("__"):
            return INTROSPECTION_COSTS.get(name, 0)
        field = parent.fields[name]
        cost = self.model.fields[(parent.name, name)]
        returned = get_named_type(field.type)
        if node.selection_set is None or not isinstance(returned, GraphQLCompositeType):
            return cost.weight
        children = node.selection_set
        list_size = cost.list_size
        if list_size is not None and list_size.sized_fields:
            # A connection: its slicing argument gives the length of its `edges`.
            assert isinstance(returned, GraphQLObjectType)
            return cost.weight + self._fields_cost(
                returned, children, (tuple(list_size.sized_fields), self._size(node, list_size))
            )
        if _is_list(field.type):
            length = size if size is not None else self._size(node, list_size)
            return length * (cost.weight + self.selection_cost(returned, children, None))
        return cost.weight + self.selection_cost(returned, children, None)

    def _size(self, node: FieldNode, list_size: ListSize | None) -> int:
        if list_size is None:
            return DEFAULT_ASSUMED_SIZE
        slicing = list_size.slicing_arguments or []
        sizes: list[tuple[str, int]] = []
        for argument in node.arguments or ():
            name = argument.name.value
            if name not in slicing:
                continue
            if self.largest_list is not None and isinstance(argument.value, VariableNode):
                sizes.append((name, self.largest_list))  # the worst case of a registered document's page size
                continue
            value = self._argument(argument.value)
            if value is None or value is Undefined:  # `first: null`, or a variable left out: not given
                continue
            if isinstance(value, list):
                sizes.append((name, len(value)))
            elif isinstance(value, int) and not isinstance(value, bool):
                sizes.append((name, max(value, 0)))
            else:
                raise bad_input(f"`{name}` must be given to price this query.", argument=name)
        if slicing and list_size.require_one_slicing_argument and len(sizes) != 1:
            names = " or ".join(f"`{name}`" for name in slicing)
            raise bad_input(f"Give exactly one of {names} to price this query.", argument=slicing[0])
        if sizes:
            return max(size for _, size in sizes)
        return list_size.assumed_size or DEFAULT_ASSUMED_SIZE

    def _argument(self, value_node: ValueNode) -> Any:
        return value_from_ast_untyped(value_node, self.variables)


def _is_list(graphql_type: Any) -> bool:
    if isinstance(graphql_type, GraphQLNonNull):
        graphql_type = graphql_type.of_type
    return isinstance(graphql_type, GraphQLList)
