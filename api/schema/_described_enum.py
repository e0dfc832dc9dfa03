"""A GraphQL enum published from a Python enum whose members carry their own description
(`api.errors.ErrorCode`, `api.scopes.Scope`), so that the schema restates neither."""

import enum
from collections.abc import Iterable
from typing import Protocol, cast

import strawberry

__all__ = ["described_enum"]


class _Described(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def value(self) -> str: ...

    @property
    def description(self) -> str: ...


def described_enum(name: str, members: Iterable[_Described], description: str) -> type[enum.Enum]:
    """The GraphQL enum `name`: one value per member, named after it and described by it.

    Example: `described_enum("Scope", Scope, "What a practice's grant lets you do.")`."""
    # The functional Enum API, whose members mypy types only when they are literals.
    values = cast(
        type[enum.Enum],
        enum.Enum(name, {m.name: strawberry.enum_value(m.value, description=m.description) for m in members}),
    )
    return strawberry.enum(values, description=description)
