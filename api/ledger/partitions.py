"""The ledger's monthly partitions on PostgreSQL: `access_records` and `disclosures`, by month of `at`.

A national platform writes millions of disclosures a day: deleting them row by row would not keep
up, and the reports would read ever larger indexes. Partitioned by month, retention drops whole
months (an instant, whatever their size) and a report over a period reads only its months
(partition pruning). Each table has a DEFAULT partition, so that a row whose month has no partition
yet is still written (the ledger fails closed: a missing partition must not refuse requests); the
months ahead are created by the migration, by each purge and by `partner-api ledger partitions`,
so the default stays empty. SQLite keeps one table of each, purged in batches (api/ledger/retention.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Connection, text

__all__ = [
    "MONTHS_AHEAD",
    "PARTITIONED",
    "PARTITION_NAME",
    "Month",
    "create_ahead",
    "drop_months_before",
    "first_kept_month",
    "is_partitioned",
    "months",
]

PARTITIONED = ("access_records", "disclosures")  # a request first, then what it disclosed; dropped the other way
MONTHS_AHEAD = 3
_MONTH_NAME = re.compile(r"^(?P<table>\w+)_(?P<year>\d{4})_(?P<month>\d{2})$")
# Any of the partitions, the DEFAULT ones included: tables of the database that no model declares.
PARTITION_NAME = re.compile(rf"^({'|'.join(PARTITIONED)})_(\d{{4}}_\d{{2}}|default)$")


@dataclass(frozen=True)
class Month:
    table: str
    first_day: date

    @property
    def name(self) -> str:
        return f"{self.table}_{self.first_day:%Y_%m}"

    @property
    def end(self) -> date:
        return _next(self.first_day)


def _next(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _start(month: date) -> str:
    return datetime(month.year, month.month, 1, tzinfo=UTC).isoformat()


def is_partitioned(connection: Connection) -> bool:
    """Whether this database partitions the ledger (PostgreSQL, once migrated)."""
    if connection.dialect.name != "postgresql":
        return False
    kind = connection.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('access_records')"))
    return kind.scalar() == "p"


def months(connection: Connection, table: str) -> list[Month]:
    """The monthly partitions of `table`, oldest first."""
    names = connection.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:table AS regclass)"
        ),
        {"table": table},
    ).scalars()
    found = [
        Month(table, date(int(m["year"]), int(m["month"]), 1))
        for name in names
        if (m := _MONTH_NAME.match(name)) and m["table"] == table
    ]
    return sorted(found, key=lambda month: month.first_day)


def create_ahead(connection: Connection, now: datetime, ahead: int = MONTHS_AHEAD) -> list[str]:
    """Create the partitions of this month and the next `ahead` ones, where missing; their names."""
    created = []
    for table in PARTITIONED:
        existing = {month.first_day for month in months(connection, table)}
        month = date(now.year, now.month, 1)
        for _ in range(ahead + 1):
            if month not in existing:
                partition = Month(table, month)
                connection.execute(
                    text(
                        f"CREATE TABLE {partition.name} PARTITION OF {table} "
                        f"FOR VALUES FROM ('{_start(month)}') TO ('{_start(partition.end)}')"
                    )
                )
                created.append(partition.name)
            month = _next(month)
    return created


def drop_months_before(connection: Connection, cutoff: datetime) -> list[Month]:
    """Drop every monthly partition that ends at or before `cutoff` (a whole month past retention)."""
    dropped = []
    for table in reversed(PARTITIONED):
        for month in months(connection, table):
            if datetime(month.end.year, month.end.month, 1, tzinfo=UTC) <= cutoff:
                connection.execute(text(f"DROP TABLE {month.name}"))
                dropped.append(month)
    return dropped


def first_kept_month(cutoff: datetime) -> datetime:
    """The start of the month holding `cutoff`: the rows before it are in dropped months (or the default)."""
    cutoff = cutoff.astimezone(UTC)
    return datetime(cutoff.year, cutoff.month, 1, tzinfo=UTC)
