"""`@requiresScopes`: each field's scopes, machine-readable in the schema, in the style of Apollo's
directive of that name (`scopes`: a list of alternatives, each a list of scopes all needed).

Generated, never written by hand: a field's scopes are the policy's `field_needs_scope` rules
(authz/fields.polar), whose values are the scope table's (api/scopes.py); the entry points' are the
row rules' scope for what they list or write (authz/policy.polar), named here from the same table.
A field readable with any live grant, or with none (`viewer`), carries no directive.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import strawberry
from graphql import GraphQLInterfaceType, GraphQLObjectType
from strawberry.schema_directive import Location
from strawberry.types.field import StrawberryField

from api.scopes import Scope

__all__ = ["ENTRY_POINT_SCOPES", "RequiresScopes", "annotate"]


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION, Location.OBJECT, Location.INTERFACE, Location.SCALAR, Location.ENUM],
    name="requiresScopes",
    description="The scopes a practice's grant must hold for this field: any one of the lists, each list in full. "
    "Without them the field is FORBIDDEN (or, for a list, holds nothing of that practice).",
)
class RequiresScopes:
    scopes: list[list[str]]


# The root fields, by the row rule they go through: listing appointments and their changes needs
# appointments:read at the practice; every write needs appointments:write.
ENTRY_POINT_SCOPES: dict[str, frozenset[Scope]] = {
    "Query.appointments": frozenset({Scope.APPOINTMENTS_READ}),
    "Query.appointmentChanges": frozenset({Scope.APPOINTMENTS_READ}),
    "Mutation.bookAppointment": frozenset({Scope.APPOINTMENTS_WRITE}),
    "Mutation.rescheduleAppointment": frozenset({Scope.APPOINTMENTS_WRITE}),
    "Mutation.cancelAppointment": frozenset({Scope.APPOINTMENTS_WRITE}),
}


def required_scopes(field_scopes: Mapping[str, frozenset[str]]) -> dict[str, list[list[str]]]:
    """Each "Type.field" -> its alternatives: one scope each (any of them opens the field)."""
    needed = {name: set(scopes) for name, scopes in field_scopes.items()}
    for name, scopes in ENTRY_POINT_SCOPES.items():
        needed.setdefault(name, set()).update(scope.value for scope in scopes)
    known = {scope.value for scope in Scope}
    unknown = {scope for scopes in needed.values() for scope in scopes} - known
    if unknown:  # the policy names a scope the table lacks: `partner-api policy check` says where
        raise ValueError(f"scopes not in api/scopes.py: {', '.join(sorted(unknown))}")
    return {name: [[scope] for scope in sorted(scopes)] for name, scopes in needed.items()}


def annotate(type_map: Mapping[str, Any], field_scopes: Mapping[str, frozenset[str]]) -> None:
    """Puts `@requiresScopes` on every field of the schema's types that needs a scope (and takes
    it off one that no longer does): the schema's SDL is printed from these definitions."""
    needed = required_scopes(field_scopes)
    for type_name, graphql_type in type_map.items():
        if type_name.startswith("__") or not isinstance(graphql_type, GraphQLObjectType | GraphQLInterfaceType):
            continue
        for field_name, field in graphql_type.fields.items():
            definition = field.extensions.get("strawberry-definition")
            if not isinstance(definition, StrawberryField):
                continue
            kept = [d for d in definition.directives if not isinstance(d, RequiresScopes)]
            scopes = needed.get(f"{type_name}.{field_name}")
            # A copy for this type: an interface's field (`Node.id`) is one definition for every type.
            own = copy.copy(definition)
            own.directives = [*kept, RequiresScopes(scopes=scopes)] if scopes else kept
            field.extensions = {**field.extensions, "strawberry-definition": own}
