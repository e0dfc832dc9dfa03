"""`rateLimit` and `extensions.cost` tell one budget: the one this response leaves.

`Query.rateLimit` is resolved while the operation runs, after its price was taken and before what
it did not use is given back; `extensions.cost.throttleStatus` is computed after that refund. So
that one response never holds two figures for one budget (1899 and 1997), the refunded figure is
written into every `rateLimit { currentlyAvailable }` the response carries, under its alias.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import FieldNode, FragmentDefinitionNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode

__all__ = ["agree_with_throttle"]

RATE_LIMIT_FIELD = "rateLimit"
CURRENTLY_AVAILABLE = "currentlyAvailable"


def _fields(
    selection_set: SelectionSetNode | None, name: str, fragments: Mapping[str, FragmentDefinitionNode]
) -> Iterator[FieldNode]:
    """The fields called `name` in a selection, through its fragments (each spread once per level)."""
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            if selection.name.value == name:
                yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, name, fragments)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            yield from _fields(fragments[selection.name.value].selection_set, name, fragments)


def _key(field: FieldNode) -> str:
    return field.alias.value if field.alias else field.name.value


def agree_with_throttle(
    data: dict[str, Any] | None,
    root: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    currently_available: int,
) -> None:
    """Sets each `rateLimit.currentlyAvailable` of `data` (a query's root) to the budget's figure."""
    if not data:
        return
    for rate_limit in _fields(root, RATE_LIMIT_FIELD, fragments):
        value = data.get(_key(rate_limit))
        if not isinstance(value, dict):  # skipped (@skip/@include), or null
            continue
        for available in _fields(rate_limit.selection_set, CURRENTLY_AVAILABLE, fragments):
            if _key(available) in value:
                value[_key(available)] = currently_available
