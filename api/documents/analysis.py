"""What registering a document checks, once: it parses and validates against the current schema
under the shape limits, holds one operation, costs at most the maximum whatever its variables, and
selects only fields some grant of the partner could let it read (authz/field_rules.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    is_abstract_type,
    parse,
    validate,
    visit,
)

from api.errors import ApiError
from api.protection.cost import CostModel
from api.protection.shape_limits import ValidationRules
from api.services.reads import MAX_PAGE_SIZE
from api.settings import Settings
from authz.field_rules import FieldRules

__all__ = ["Analysis", "DocumentRefused", "analyse", "parsed_and_valid", "selected_fields"]

# A list a variable sizes (`first: $first`, `ids: $ids`) is priced at the most it may hold: a page,
# or `nodes(ids:)` (as many, tests/documents/test_registration.py).
LARGEST_LIST = MAX_PAGE_SIZE


class DocumentRefused(ValueError):
    """The document cannot be registered (or run any more): `problems`, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Analysis:
    """A document checked and priced: what the registry stores and what a dry run reports."""

    document: DocumentNode
    operation: OperationDefinitionNode
    cost: int  # worst case, for any variables
    fields: tuple[str, ...]  # "Type.field" it may read (an abstract type's field: each possible type's)
    scopes: tuple[str, ...]  # the scopes those fields need ("a or b" when either will do)

    @property
    def operation_name(self) -> str | None:
        return self.operation.name.value if self.operation.name else None

    @property
    def operation_type(self) -> str:
        return self.operation.operation.value


def parsed_and_valid(schema: GraphQLSchema, text: str, settings: Settings, rules: ValidationRules) -> DocumentNode:
    """The document, parsed under the token limit and valid under the shape limits and the
    specification's rules, with exactly one operation, and no larger than a request's body may be:
    a registered document skips the body limit when it runs, so 20 MB in one string literal (one
    token) held each worker's event loop seconds to parse."""
    if len(text.encode("utf-8", "surrogatepass")) > settings.max_body_bytes:
        raise DocumentRefused([f"is larger than a request's body may be ({settings.max_body_bytes} bytes)"])
    try:
        document = parse(text, max_tokens=settings.max_tokens)
    except GraphQLError as error:
        raise DocumentRefused([f"does not parse: {error.message}"]) from None
    errors = validate(schema, document, rules.shape) or validate(schema, document, rules.spec, hide_suggestions=True)
    if errors:
        raise DocumentRefused([f"invalid: {e.message}" for e in errors])
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1:
        raise DocumentRefused([f"holds {len(operations)} operations; a registered document holds one"])
    return document


def selected_fields(schema: GraphQLSchema, document: DocumentNode) -> list[tuple[str, ...]]:
    """Each field selection as the "Type.field" names it may read: one for a field of an object
    type, one per possible type for a field of an interface or union (`node { id }`)."""
    type_info = TypeInfo(schema)
    found: list[tuple[str, ...]] = []

    class Collect(Visitor):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            parent, name = type_info.get_parent_type(), node.name.value
            if parent is None or name.startswith("__"):
                return
            types = schema.get_possible_types(parent) if is_abstract_type(parent) else [parent]
            found.append(tuple(f"{t.name}.{name}" for t in types if name in getattr(t, "fields", {})))

    visit(document, TypeInfoVisitor(type_info, Collect()))
    return found


def _needed_scopes(rules: FieldRules, fields: list[tuple[str, ...]]) -> tuple[str, ...]:
    needed: set[str] = set()
    for alternatives in fields:
        for field in alternatives:
            scopes = rules.scopes_of(field)
            if scopes:
                needed.add(" or ".join(sorted(scopes)))
    return tuple(sorted(needed))


def analyse(
    schema: GraphQLSchema,
    text: str,
    settings: Settings,
    rules: ValidationRules,
    field_rules: FieldRules,
    unreadable: Callable[[str], str | None],
) -> Analysis:
    """Every check of registration; `unreadable(field)` says why no grant of the partner could
    read a field (None when one could). DocumentRefused lists each problem found."""
    document = parsed_and_valid(schema, text, settings, rules)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    problems: list[str] = []
    cost = 0
    try:
        cost = CostModel.of(schema).worst_case_cost(operation, fragments, LARGEST_LIST)
    except ApiError as error:
        problems.append(f"cannot be priced: {error}")
    if cost > settings.max_query_cost:
        problems.append(
            f"costs up to {cost} points (lists a variable sizes counted at {LARGEST_LIST} items); the maximum is "
            f"{settings.max_query_cost}: ask for smaller pages or fewer fields"
        )
    fields = selected_fields(schema, document)
    for alternatives in fields:
        reasons = [unreadable(field) for field in alternatives]
        if alternatives and all(reasons):  # readable when any possible type's field is
            problems.append(str(reasons[0]))
    if problems:
        raise DocumentRefused(sorted(set(problems), key=problems.index))
    flat = tuple(sorted({field for alternatives in fields for field in alternatives}))
    return Analysis(document, operation, cost, flat, _needed_scopes(field_rules, fields))
