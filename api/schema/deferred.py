"""Values computed only if the client selects their field (see api.schema.guard.resolve_field)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Deferred"]


class Deferred:
    """A field value computed on resolution, e.g. a page's cursors: signing 100 of them that
    nobody asked for is measurable."""

    __slots__ = ("compute",)

    def __init__(self, compute: Callable[[], object]) -> None:
        self.compute = compute
