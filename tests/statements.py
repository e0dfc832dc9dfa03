"""The SQL statements an app sends, listed while a block runs: how tests show that a refusal costs no
database work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event


@contextmanager
def statements_sent(app: Any) -> Iterator[list[str]]:
    """Every statement the app's engine sends inside the block, in order."""
    statements: list[str] = []
    engine = app.state.engine.sync_engine
    listener = lambda _c, _cur, statement, *_: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", listener)
