"""Field-level authorization in the GraphQL layer.

Objects are built with the set of "Type.field" names the policy lets the partner read at the
object's practice. A forbidden field never receives its value: it holds a `Forbidden` marker,
which the default resolver turns into a FORBIDDEN error at that path (the field is null, the
rest of the response is served). Fields with their own resolver call `require`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar

from strawberry.types.base import get_object_definition
from strawberry.utils.str_converters import to_camel_case

from api.errors import FieldForbidden
from api.schema.deferred import Deferred

T = TypeVar("T")


class Forbidden:
    __slots__ = ("field", "outside_horizon")

    def __init__(self, field: str, outside_horizon: bool) -> None:
        self.field, self.outside_horizon = field, outside_horizon


def resolve_field(source: Any, name: str) -> object:
    """strawberry's default resolver (getattr), refusing `Forbidden` markers, computing `Deferred`
    values (cursors) only for fields the client selected, and recording in the ledger each value a
    disclosed record (an appointment, a patient) actually sends.

    graphql-core calls it only for fields it executes (after `@skip`/`@include`, once per response
    key), so the ledger records what the response carries: not what was selected, nor nulls."""
    value = getattr(source, name)
    if value.__class__ is Forbidden:
        raise FieldForbidden(value.field, value.outside_horizon)
    if value.__class__ is Deferred:
        return value.compute()
    if value is not None:
        disclosed = getattr(source, "disclosed", None)
        if disclosed is not None:
            disclosed.carried(_qualified(source.__class__, name))
    return value


def _qualified(cls: type, python_name: str) -> str:
    return _qualified_names(cls)[python_name]


@lru_cache(maxsize=256)
def _qualified_names(cls: type) -> dict[str, str]:
    """Each field of strawberry type `cls` by its Python name -> "Type.field", the name the policy
    and the ledger give it."""
    definition = get_object_definition(cls, strict=True)
    return {
        f.python_name: f"{definition.name}.{f.graphql_name or to_camel_case(f.python_name)}" for f in definition.fields
    }


def require(source: Any, field: str) -> None:
    """For a field with a resolver: FORBIDDEN unless readable (`closed`: the fields the horizon withholds)."""
    if field not in source.readable:
        raise FieldForbidden(field, field in getattr(source, "closed", ()))


@lru_cache(maxsize=1024)
def _forbidden_values(
    cls: type, readable: frozenset[str], closed: frozenset[str]
) -> tuple[tuple[str, Forbidden], ...]:
    qualified = _qualified_names(cls)
    # Only plain data fields: fields with resolvers check for themselves with `require`.
    return tuple(
        (f.python_name, Forbidden(qualified[f.python_name], qualified[f.python_name] in closed))
        for f in get_object_definition(cls, strict=True).fields
        if f.base_resolver is None and qualified[f.python_name] not in readable
    )


def build(
    cls: type[T], readable: frozenset[str], withheld_by_horizon: frozenset[str] = frozenset(), **values: Any
) -> T:
    """An instance of strawberry type `cls` whose forbidden fields hold no value (those of
    `withheld_by_horizon` tell that the record is outside the reading horizon)."""
    kind: type = cls  # a class is hashable, whatever T is
    for name, marker in _forbidden_values(kind, readable, withheld_by_horizon):
        values[name] = marker
    return cls(readable=readable, **values)  # type: ignore[call-arg]  # a strawberry type's fields are its keyword arguments
