"""Does a GraphQL response body conform to the schema and to the API's error contract?

Written against the GraphQL specification, independently of the server: the response keys are
exactly the fields the operation selects on the runtime type (aliases, fragments, @skip and
@include applied), a non-null field is never null, a list is a list, a scalar has its type and an
enum one of its values; every error has a message and an `extensions.code` of the API's
vocabulary. A value of an interface or union type without `__typename` conforms when it conforms
to one of the possible types.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLEnumType,
    GraphQLIncludeDirective,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    is_abstract_type,
)
from graphql.execution.values import get_directive_values

from api.errors import ErrorCode

INT32 = range(-(2**31), 2**31)
SCALARS = {
    "Int": lambda v: isinstance(v, int) and not isinstance(v, bool) and v in INT32,
    "Float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "String": lambda v: isinstance(v, str),
    "ID": lambda v: isinstance(v, str),
    "Boolean": lambda v: isinstance(v, bool),
    "DateTime": lambda v: isinstance(v, str) and _parses(datetime.fromisoformat, v),
    "Date": lambda v: isinstance(v, str) and _parses(date.fromisoformat, v),
}


def _parses(parse: Any, value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


class Mismatch(Exception):
    pass


def error_contract_violations(body: Any) -> list[str]:
    """What breaks the API's contract for errors: each error a message and a known `extensions.code`."""
    if not isinstance(body, dict) or not set(body) <= {"data", "errors", "extensions"}:
        return [f"not a GraphQL response: {str(body)[:200]}"]
    errors = body.get("errors", [])
    if not isinstance(errors, list) or ("errors" in body and not errors):
        return ["`errors` is not a non-empty list"]
    problems = []
    codes = {code.value for code in ErrorCode}
    for error in errors:
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            problems.append(f"error without a message: {error}")
        elif (error.get("extensions") or {}).get("code") not in codes:
            problems.append(f"error without a known extensions.code: {error}")
    if "data" not in body and not errors:
        problems.append("neither data nor errors")
    return problems


def data_violations(
    schema: GraphQLSchema, document: DocumentNode, data: Any, operation_name: str | None = None,
    variables: dict[str, Any] | None = None,
) -> list[str]:
    """Where `data`, as returned for `document`, contradicts the schema (empty when it conforms)."""
    if data is None:
        return []
    checker = _Checker(schema, document, variables or {})
    operation = checker.operation(operation_name)
    root = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
    }[operation.operation]
    try:
        assert root is not None
        checker.object(root, [operation.selection_set], data, "data")
    except Mismatch as mismatch:
        return [str(mismatch)]
    return []


class _Checker:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any]) -> None:
        self.schema, self.document, self.variables = schema, document, variables
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def operation(self, name: str | None) -> OperationDefinitionNode:
        operations = [d for d in self.document.definitions if isinstance(d, OperationDefinitionNode)]
        if name is None:
            assert len(operations) == 1, "several operations and no name"
            return operations[0]
        return next(o for o in operations if o.name and o.name.value == name)

    def _included(self, node: FieldNode | InlineFragmentNode | FragmentSpreadNode) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include and include.get("if") is False)

    def _applies(self, condition: str | None, runtime: GraphQLObjectType) -> bool:
        if condition is None or condition == runtime.name:
            return True
        type_ = self.schema.get_type(condition)
        return is_abstract_type(type_) and self.schema.is_sub_type(type_, runtime)  # type: ignore[arg-type]

    def collect(self, runtime: GraphQLObjectType, selection_sets: list[SelectionSetNode]) -> dict[str, list[FieldNode]]:
        fields: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()

        def walk(selection_set: SelectionSetNode) -> None:
            for selection in selection_set.selections:
                if not self._included(selection):  # type: ignore[arg-type]
                    continue
                if isinstance(selection, FieldNode):
                    key = selection.alias.value if selection.alias else selection.name.value
                    fields.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition.name.value if selection.type_condition else None
                    if self._applies(condition, runtime):
                        walk(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.fragments.get(name)
                    if name not in visited and fragment and self._applies(fragment.type_condition.name.value, runtime):
                        visited.add(name)
                        walk(fragment.selection_set)

        for selection_set in selection_sets:
            walk(selection_set)
        return fields

    def object(self, type_: GraphQLObjectType, selection_sets: list[SelectionSetNode], value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise Mismatch(f"{path}: {type_.name} is not an object: {value!r}")
        fields = self.collect(type_, selection_sets)
        if set(value) != set(fields):
            raise Mismatch(f"{path}: keys {sorted(value)} but {type_.name} selects {sorted(fields)}")
        for key, nodes in fields.items():
            name = nodes[0].name.value
            if name == "__typename":
                if value[key] != type_.name:
                    raise Mismatch(f"{path}.{key}: {value[key]!r} is not {type_.name}")
                continue
            field = type_.fields[name]
            children = [node.selection_set for node in nodes if node.selection_set]
            self.value(field.type, children, value[key], f"{path}.{key}")

    def value(self, type_: GraphQLOutputType, selection_sets: list[SelectionSetNode], value: Any, path: str) -> None:
        if isinstance(type_, GraphQLNonNull):
            if value is None:
                raise Mismatch(f"{path}: null in a non-null field")
            return self.value(type_.of_type, selection_sets, value, path)
        if value is None:
            return None
        if isinstance(type_, GraphQLList):
            if not isinstance(value, list):
                raise Mismatch(f"{path}: not a list: {value!r}")
            for index, item in enumerate(value):
                self.value(type_.of_type, selection_sets, item, f"{path}[{index}]")
        elif isinstance(type_, GraphQLScalarType):
            if not SCALARS[type_.name](value):
                raise Mismatch(f"{path}: {value!r} is not a {type_.name}")
        elif isinstance(type_, GraphQLEnumType):
            if value not in type_.values:
                raise Mismatch(f"{path}: {value!r} is not a value of {type_.name}")
        elif isinstance(type_, GraphQLObjectType):
            self.object(type_, selection_sets, value, path)
        else:
            assert isinstance(type_, GraphQLAbstractType)
            candidates = self.schema.get_possible_types(type_)
            failures = []
            for candidate in candidates:
                try:
                    return self.object(candidate, selection_sets, value, path)
                except Mismatch as mismatch:
                    failures.append(str(mismatch))
            raise Mismatch(f"{path}: fits no type of {type_.name}: {failures}")
        return None
