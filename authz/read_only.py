"""Polar's reach into Python, closed at the host: a policy reads the fields of the records, nothing else.

Polar calls back into Python for every attribute it reads (`Query.handle_external_call`), every
`new` (`handle_make_external`) and `debug()` (`handle_debug`, which waits on standard input). A
policy that calls a method or reads a name starting with `_` reaches any Python object from any
value: `Partner.__init__.__globals__...` ran a shell command in `policy check` and in every worker.
The text is screened first (authz/polar_source.py `unsafe_constructs`, which says where), but a
screen of the text can disagree with Polar's own lexer (an escaped newline in a string hid a
query from it); this guard holds whatever the text looks like. Installed once, for every query of
the process (the application's only use of Polar), by importing authz.engine.
"""

from __future__ import annotations

from typing import Any

from polar.exceptions import OsoError
from polar.query import Query

__all__ = ["PolicyReachedPython", "install"]


class PolicyReachedPython(OsoError):
    """A policy tried a method call, `new`, `debug()` or a name starting with `_`: the query fails."""


_read_field = Query.handle_external_call


def _field_reads_only(query: Query, data: dict[str, Any]) -> None:
    attribute = data["attribute"]
    if data["args"] is not None:
        raise PolicyReachedPython(f"a policy reads fields only: it called `{attribute}(...)`")  # type: ignore[no-untyped-call]  # polar's exception classes are unannotated
    if attribute.startswith("_"):
        raise PolicyReachedPython(f"a policy reads fields only: it read `{attribute}`")  # type: ignore[no-untyped-call]
    _read_field(query, data)  # type: ignore[no-untyped-call]  # polar's own handler, unannotated


def _no_instances(_query: Query, data: dict[str, Any]) -> None:
    raise PolicyReachedPython("a policy builds no application object (`new`)")  # type: ignore[no-untyped-call]


def _no_debugger(_query: Query, _data: dict[str, Any]) -> None:
    raise PolicyReachedPython("`debug()` would wait on the worker's standard input")  # type: ignore[no-untyped-call]


def install() -> None:
    """Idempotent: the handlers of every Polar query of the process."""
    Query.handle_external_call = _field_reads_only  # type: ignore[method-assign]
    Query.handle_make_external = _no_instances  # type: ignore[method-assign]
    Query.handle_debug = _no_debugger  # type: ignore[method-assign]
