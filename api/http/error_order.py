"""A response's errors in the order of the fields they concern in the response.

graphql-core lists errors as they happen, which depends on how the resolvers' awaits interleave;
every response instead lists them as its data reads, top to bottom (errors without a path, about
the request, first). So a client, a test and the access ledger (which records the first error's
code) see one order whichever executor ran the document (api/compiled/).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graphql import GraphQLError

__all__ = ["in_response_order"]


def in_response_order(errors: Sequence[GraphQLError], data: Any) -> list[GraphQLError]:
    if len(errors) < 2:
        return list(errors)
    return sorted(errors, key=lambda error: _position(error.path, data))  # stable: ties keep their order


def _position(path: Sequence[str | int] | None, data: Any) -> tuple[int, ...]:
    """Where `path` lies in `data`: each key's index among its object's keys (the document's order),
    each list index as it is; below a null (a nulled parent), every part counts as first."""
    position: list[int] = []
    node = data
    for part in path or ():
        if isinstance(part, int):
            position.append(part)
            node = node[part] if isinstance(node, list) and part < len(node) else None
        elif isinstance(node, dict):
            keys = list(node)
            position.append(keys.index(part) if part in node else len(keys))
            node = node.get(part)
        else:
            position.append(0)
    return tuple(position)
