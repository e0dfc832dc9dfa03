"""The plan of an appointments page read in one SQL statement and projected straight to JSON.

Built from a compiled plan (api/compiled/plan.py) whose only root field is `appointments`: each
object of the page (the connection, its edges, pageInfo, the appointment, its patient, practitioner
and practice) becomes a `Shape`, the list of its selected fields in document order, each leaf with
the attribute its value is read from and the output coercion of its GraphQL type. Which of them the
partner may read is decided per request and practice by the policy (api/compiled/page_run.py);
nothing here depends on a partner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from graphql import FieldNode, get_named_type, is_leaf_type, is_non_null_type

if TYPE_CHECKING:
    from api.compiled.plan import FieldPlan  # which builds page plans

__all__ = ["TYPENAME", "Leaf", "Nested", "PagePlan", "Shape", "page_plan"]

TYPENAME = "__typename"

# What each object of the page may select, by GraphQL name; anything else is read through the resolvers.
_SELECTABLE: dict[str, frozenset[str]] = {
    "AppointmentConnection": frozenset({"edges", "pageInfo", "totalCount"}),
    "AppointmentEdge": frozenset({"cursor", "node"}),
    "PageInfo": frozenset({"hasNextPage", "hasPreviousPage", "startCursor", "endCursor"}),
    "Appointment": frozenset(
        {"id", "startsAt", "endsAt", "status", "reason", "source", "createdAt", "updatedAt", "patient",
         "practitioner", "practice"}
    ),
    "Patient": frozenset({"id", "firstName", "lastName", "gender", "birthDate", "phone", "email"}),
    "Practitioner": frozenset({"id", "firstName", "lastName", "specialty", "rpps"}),
    "Practice": frozenset({"id", "name", "address", "timezone"}),
}


@dataclass(frozen=True)
class Leaf:
    key: str  # the response key
    name: str  # the GraphQL field name ("" for __typename)
    qualified: str  # "Type.field", as the policy and the ledger name it
    attribute: str  # the Python name of the field: the row's column, or the object's value
    coerce: Callable[[Any], Any] | None  # the type's output coercion; None for __typename
    non_null: bool
    node: FieldNode
    typename: str  # the parent type's name: the value of __typename

    @property
    def is_typename(self) -> bool:
        return self.coerce is None


@dataclass(frozen=True)
class Nested:
    key: str
    name: str
    qualified: str
    shape: Shape
    node: FieldNode


@dataclass(frozen=True)
class Shape:
    typename: str
    fields: tuple[Leaf | Nested, ...]

    def nested(self, name: str) -> Nested | None:
        """The first selection of the object field `name` (a page selects each once: see `_shape`)."""
        return next((f for f in self.fields if isinstance(f, Nested) and f.name == name), None)

    @cached_property
    def beside_leaves(self) -> tuple[Leaf | Nested, ...]:
        """What a row's projection does beside reading the leaves, in document order: the object
        fields, and the reason (which a patient's refusal withholds)."""
        return tuple(f for f in self.fields if isinstance(f, Nested) or f.name == "reason")


@dataclass(frozen=True)
class PagePlan:
    root_key: str
    root: FieldPlan  # the `appointments` field, with its arguments
    connection: Shape

    @cached_property
    def node(self) -> Shape | None:
        edges = self.connection.nested("edges")
        node = edges.shape.nested("node") if edges else None
        return node.shape if node else None

    @cached_property
    def reads_reason(self) -> bool:
        """The appointment's reason is selected: its patient's health data, counted as reading them."""
        node = self.node
        return node is not None and any(isinstance(f, Leaf) and f.name == "reason" for f in node.fields)

    def object(self, name: str) -> Shape | None:
        """The shape of the appointment's `patient`, `practitioner` or `practice`, if selected."""
        return self._objects.get(name)

    @cached_property
    def _objects(self) -> dict[str, Shape]:
        node = self.node
        return {n.name: n.shape for n in node.fields if isinstance(n, Nested)} if node else {}


class _Unsupported(Exception):
    pass


def page_plan(fields: tuple[FieldPlan, ...]) -> PagePlan | str:
    """The page's plan, or why the document is run through the resolvers instead."""
    if len(fields) != 1 or fields[0].node.name.value != "appointments":
        return "only a lone `appointments` root field is read in one statement"
    root = fields[0]
    try:
        return PagePlan(root.key, root, _shape(root))
    except _Unsupported as unsupported:
        return str(unsupported)


def _shape(field: FieldPlan) -> Shape:
    typename = get_named_type(field.return_type).name
    selectable = _SELECTABLE.get(typename, frozenset())
    shaped: list[Leaf | Nested] = []
    objects: set[str] = set()
    for child in field.children:
        name = child.node.name.value
        if name == TYPENAME:
            shaped.append(Leaf(child.key, "", "", "", None, True, child.node, typename))
            continue
        if name not in selectable:
            raise _Unsupported(f"{typename}.{name} is read through its resolver")
        assert child.definition is not None  # only __typename has none
        named = get_named_type(child.return_type)
        if is_leaf_type(named):
            python_name = child.definition.extensions["strawberry-definition"].python_name
            shaped.append(
                Leaf(
                    child.key,
                    name,
                    f"{typename}.{name}",
                    python_name,
                    named.coerce_output_value,
                    is_non_null_type(child.return_type),
                    child.node,
                    typename,
                )
            )
        else:
            if name in objects:  # the same object under two keys: left to the resolvers
                raise _Unsupported(f"{typename}.{name} selected twice")
            objects.add(name)
            shaped.append(Nested(child.key, name, f"{typename}.{name}", _shape(child), child.node))
    return Shape(typename, tuple(shaped))
