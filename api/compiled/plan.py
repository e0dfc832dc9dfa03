"""A compiled plan for a registered document: its selections resolved against the schema once,
when a worker first loads the document, so that each request only runs them.

The plan holds, per selected field, its response key, its definition, its return type and its
sub-selections: no field collection, fragment merging or type lookup is left for the request.
Only documents of the shapes partner software sends are compiled (a query whose root fields are
listed in ROOTS, selecting object types' fields, with aliases); anything else (fragments,
directives, interfaces or unions, introspection, a field selected twice under one key, mutations)
runs on the general executor, and `compile_plan` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_leaf_type,
    is_object_type,
)

from api.compiled.page_plan import TYPENAME, PagePlan, page_plan

__all__ = ["ROOTS", "Fallback", "FieldPlan", "Plan", "compile_plan", "described"]

# The root fields compiled: the pages partner software reads (the benchmark's page first).
ROOTS = frozenset({"appointments", "practice", "practices"})


@dataclass(frozen=True)
class FieldPlan:
    key: str  # the response key (the alias, or the field's name)
    node: FieldNode
    definition: GraphQLField | None  # None for __typename
    parent: GraphQLObjectType
    return_type: GraphQLOutputType
    children: tuple[FieldPlan, ...]  # the selections of an object type, compiled
    basic: bool = False  # a plain field: strawberry's default resolver, which takes no resolve info


@dataclass(frozen=True)
class Plan:
    operation: OperationDefinitionNode
    fields: tuple[FieldPlan, ...]  # the root fields
    # An appointments page read in one statement (api/compiled/page_plan.py), or why it is read
    # through the resolvers (api/compiled/runner.py).
    page: PagePlan | str = "not an appointments page"


@dataclass(frozen=True)
class Fallback:
    """The document runs on the general executor, for this reason."""

    reason: str


class _Unsupported(Exception):
    pass


def compile_plan(schema: GraphQLSchema, document: DocumentNode) -> Plan | Fallback:
    """The plan of a parsed and validated document, or why it has none."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(document.definitions) != 1 or len(operations) != 1:
        return Fallback("fragments or several operations")
    operation = operations[0]
    if operation.operation != OperationType.QUERY:
        return Fallback(f"{operation.operation.value}s are not compiled")
    if operation.directives:
        return Fallback("directives")
    query = schema.query_type
    assert query is not None  # the schema has a query type
    try:
        roots = _selections(schema, query, operation.selection_set)
    except _Unsupported as unsupported:
        return Fallback(str(unsupported))
    outside = sorted({f.node.name.value for f in roots} - ROOTS - {TYPENAME})
    if outside:
        return Fallback(f"root field {outside[0]} is not compiled")
    return Plan(operation, roots, page_plan(roots))


def described(plan: Plan | Fallback) -> str:
    """For operators (`documents show`) and the benchmark: how the document runs."""
    if isinstance(plan, Fallback):
        return f"general executor ({plan.reason})"
    if isinstance(plan.page, str):
        return f"compiled, read through the resolvers ({plan.page})"
    return "compiled, read in one statement"


def _selections(
    schema: GraphQLSchema, parent: GraphQLObjectType, selection_set: SelectionSetNode
) -> tuple[FieldPlan, ...]:
    plans: list[FieldPlan] = []
    keys: set[str] = set()
    for selection in selection_set.selections:
        if not isinstance(selection, FieldNode):
            raise _Unsupported("fragments")
        if selection.directives:
            raise _Unsupported("directives")
        name = selection.name.value
        key = selection.alias.value if selection.alias else name
        if key in keys:  # graphql-core would merge them: left to it
            raise _Unsupported(f"{key} selected twice")
        keys.add(key)
        if name == TYPENAME:
            plans.append(FieldPlan(key, selection, None, parent, schema.get_type("String"), ()))  # type: ignore[arg-type]  # a built-in scalar
            continue
        if name.startswith("__"):
            raise _Unsupported("introspection")
        definition = parent.fields[name]
        named = get_named_type(definition.type)
        children: tuple[FieldPlan, ...] = ()
        if is_object_type(named):
            assert selection.selection_set is not None  # validated: an object type has a selection
            children = _selections(schema, named, selection.selection_set)
        elif not is_leaf_type(named):
            raise _Unsupported(f"{named.name} is an interface or a union")
        # strawberry's resolver of a field without resolver, arguments or extensions (its `get_result`)
        basic = getattr(definition.resolve, "__name__", "") == "_get_basic_result"
        plans.append(FieldPlan(key, selection, definition, parent, definition.type, children, basic))
    return tuple(plans)
