"""Query plans of the benchmark page: the SQL the full app really issues, explained as issued.

The statements are captured at the cursor (after the policy filter and the paging are compiled
in), with their driver-level parameters, so the plans are those of the request, not of a
hand-written look-alike. On PostgreSQL each runs under EXPLAIN ANALYZE twice: as sent, and as
the sixth run of a prepared statement. The app's driver caches prepared statements, and from
the sixth run on the server may switch one to a generic plan, which the timings then measure.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# The tables that grow with the data set; a full pass over one of them breaks the latency target.
LARGE_TABLES = frozenset({"appointments", "patients"})
EXPLAINED = re.compile(r"\b(appointments|patients|practitioners|practice_memberships)\b")
READ = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)
PG_SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")
# SQLite: SEARCH uses an index to seek; SCAN reads the whole table, or a whole index in its order.
SQLITE_SCAN = re.compile(r"^SCAN ([A-Za-z_]\w*)")  # not "SCAN 8 CONSTANT ROWS"

Statement = tuple[str, tuple[Any, ...]]


async def capture(engine: AsyncEngine, request: Callable[[], Awaitable[None]]) -> list[Statement]:
    """The reads of the explained tables that one request issues."""
    captured: list[Statement] = []

    def record(_conn, _cursor, statement, parameters, _context, _executemany):  # type: ignore[no-untyped-def]
        captured.append((statement, tuple(parameters or ())))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await request()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    return [(sql, params) for sql, params in captured if READ.match(sql) and EXPLAINED.search(sql)]


async def explain(engine: AsyncEngine, statements: list[Statement]) -> list[dict[str, Any]]:
    # One connection, never committed: EXPLAIN ANALYZE runs the statement for real.
    async with engine.connect() as connection:
        explain_one = _explain_postgresql if connection.dialect.name == "postgresql" else _explain_sqlite
        return [{"table": _table(sql), **await explain_one(connection, sql, params), "sql": sql,
                 "parameters": [str(p) for p in params]} for sql, params in statements]


async def _plan(connection: AsyncConnection, sql: str, params: tuple[Any, ...]) -> list[str]:
    return [str(row[-1]) for row in await connection.exec_driver_sql(sql, params)]


async def _explain_postgresql(connection: AsyncConnection, sql: str, params: tuple[Any, ...]) -> dict[str, Any]:
    plan = await _plan(connection, f"EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) {sql}", params)
    cached = await _cached_plan(connection, sql, params)
    return {
        **_verdict(PG_SEQ_SCAN.findall("\n".join(plan + cached)), _execution_ms(plan), plan=plan, cached_plan=cached),
        "cached_execution_ms": _execution_ms(cached),
    }


async def _cached_plan(connection: AsyncConnection, sql: str, params: tuple[Any, ...]) -> list[str]:
    # EXECUTE takes values, not bind parameters: quoted literals, which PREPARE's inferred types parse.
    values = ", ".join("NULL" if p is None else "'" + str(p).replace("'", "''") + "'" for p in params)
    execute = f"EXECUTE explained ({values})" if params else "EXECUTE explained"
    await connection.exec_driver_sql(f"PREPARE explained AS {sql}")
    for _ in range(5):
        await connection.exec_driver_sql(execute)
    plan = await _plan(connection, f"EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) {execute}", ())
    await connection.exec_driver_sql("DEALLOCATE explained")
    return plan


def _execution_ms(plan: list[str]) -> float | None:
    found = re.search(r"Execution Time: ([\d.]+) ms", "\n".join(plan))
    return float(found.group(1)) if found else None


async def _explain_sqlite(connection: AsyncConnection, sql: str, params: tuple[Any, ...]) -> dict[str, Any]:
    plan = await _plan(connection, f"EXPLAIN QUERY PLAN {sql}", params)
    samples = []
    for _ in range(5):  # SQLite has no EXPLAIN ANALYZE: time the statement itself
        began = time.perf_counter()
        (await connection.exec_driver_sql(sql, params)).all()
        samples.append((time.perf_counter() - began) * 1000)
    scans = [m.group(1) for line in plan if (m := SQLITE_SCAN.match(line))]
    return _verdict(scans, statistics.median(samples), plan=plan)


def slow_cached_plans(explained: list[dict[str, Any]], factor: float = 3.0, floor_ms: float = 1.0) -> list[str]:
    """The reads whose plan as the app's cached statement runs is much slower than their plan as sent: a
    generic plan that cannot see the request's values (a data set's size brings it out, not a small one)."""
    return [
        f"{e['table']} ({e['execution_ms']:.2f} -> {e['cached_execution_ms']:.2f} ms)"
        for e in explained
        if e.get("cached_execution_ms") and e.get("execution_ms") is not None
        and e["cached_execution_ms"] > max(floor_ms, factor * e["execution_ms"])
    ]


def _verdict(full_scans: list[str], execution_ms: float | None, **plans: list[str]) -> dict[str, Any]:
    tables = sorted(set(full_scans))
    return {
        "full_scans": tables,
        "large_table_full_scan": bool(LARGE_TABLES.intersection(tables)),
        "execution_ms": execution_ms,
        **plans,
    }


def _table(sql: str) -> str:
    found = re.search(r"\bFROM (\w+)", sql)
    return found.group(1) if found else "?"


def write(path: Path, db: str, size: str, explained: list[dict[str, Any]]) -> None:
    parts = [f"Plans of the benchmark page's statements, {db}, data set {size}\n"]
    for n, e in enumerate(explained, 1):
        parts.append(
            f"\n=== {n}. from {e['table']}: {e['execution_ms']} ms, "
            f"full scans: {', '.join(e['full_scans']) or 'none'}\n{e['sql']}\n-- parameters: {e['parameters']}\n"
        )
        parts.append("\n".join(e["plan"]) + "\n")
        if "cached_plan" in e:
            parts.append(
                "-- as the sixth run of a prepared statement, as the app's cached statements run:\n"
                + "\n".join(e["cached_plan"])
                + "\n"
            )
    path.write_text("".join(parts))


def summary(explained: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the JSON report keeps of each statement."""
    return [
        {
            key: e[key]
            for key in ("table", "large_table_full_scan", "full_scans", "execution_ms", "cached_execution_ms", "sql")
            if key in e
        }
        for e in explained
    ]
