"""A partitioned ledger on PostgreSQL: `access_records` and `disclosures` by month of `at`.

Both databases: `disclosures.at` and `disclosures.partner_id`, its request's (`at` is the partition
key; with `partner_id`, the partner report's range), backfilled; `disclosures` loses its foreign key
to `access_records` (a month of both is dropped at once) and `access_records.request_id` its unique
constraint (on a partitioned table it would have to hold `at`).
PostgreSQL then rebuilds each table as a partitioned one, monthly partitions from its oldest row to
three months ahead, plus a DEFAULT one, and copies the rows. The rebuild reads the columns, indexes
and foreign keys from the catalog, so it carries whatever columns and indexes the tables have by then
(other revisions of this round add some). SQLite keeps plain tables (api/ledger/partitions.py).

Revision ID: 8caa10998681
Revises: 7222708647ea
Create Date: 2026-11-30 04:00:00
"""

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "8caa10998681"
down_revision: str | None = "7222708647ea"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTCDateTime = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLES = ("access_records", "disclosures")
MONTHS_AHEAD = 3  # as api/ledger/partitions.py (revisions do not import application code)
_ON_TABLE = re.compile(r" ON (ONLY )?\S+ USING ")


def upgrade() -> None:
    op.add_column("disclosures", sa.Column("at", UTCDateTime, nullable=True))
    op.add_column("disclosures", sa.Column("partner_id", BigId, nullable=True))
    op.execute(
        "UPDATE disclosures SET "
        "at = (SELECT a.at FROM access_records a WHERE a.id = disclosures.access_id), "
        "partner_id = (SELECT a.partner_id FROM access_records a WHERE a.id = disclosures.access_id)"
    )
    with op.batch_alter_table("disclosures") as batch:
        batch.alter_column("at", existing_type=UTCDateTime, nullable=False)
        batch.drop_constraint("fk_disclosures_access_id_access_records", type_="foreignkey")
        batch.create_foreign_key(
            "fk_disclosures_partner_id_partners", "partners", ["partner_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_disclosures_partner_at", ["partner_id", "at"])
    with op.batch_alter_table("access_records") as batch:
        batch.drop_constraint("uq_access_records_request_id", type_="unique")
        batch.create_index("ix_access_records_request_id", ["request_id"])
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            _rebuild(table, partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            _rebuild(table, partitioned=False)
    with op.batch_alter_table("access_records") as batch:
        batch.drop_index("ix_access_records_request_id")
        batch.create_unique_constraint("uq_access_records_request_id", ["request_id"])
    with op.batch_alter_table("disclosures") as batch:
        batch.drop_index("ix_disclosures_partner_at")
        batch.drop_constraint("fk_disclosures_partner_id_partners", type_="foreignkey")
        batch.create_foreign_key(
            "fk_disclosures_access_id_access_records", "access_records", ["access_id"], ["id"], ondelete="CASCADE"
        )
        batch.drop_column("partner_id")
        batch.drop_column("at")


def _rebuild(table: str, partitioned: bool) -> None:
    """`table` rebuilt (partitioned by month of `at`, or plain again) with its columns, defaults, checks,
    comments, indexes and foreign keys as the catalog has them, and its rows."""
    bind = op.get_bind()
    indexes = bind.execute(
        sa.text(
            "SELECT i.relname, pg_get_indexdef(x.indexrelid), x.indisunique, x.indisprimary "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = CAST(:t AS regclass)"
        ),
        {"t": table},
    ).all()
    foreign_keys = bind.execute(
        sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype = 'f'"
        ),
        {"t": table},
    ).all()
    unique = [name for name, _, is_unique, primary in indexes if is_unique and not primary]
    if partitioned and unique:  # a unique index of a partitioned table must hold `at`: decide it by hand
        raise RuntimeError(f"{table} has unique indexes {unique}; make them include `at` first")
    primary_key = next(name for name, _, _, primary in indexes if primary)
    old = f"{table}_before_rebuild"
    for name, _ in foreign_keys:
        op.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    for number, (name, *_) in enumerate(indexes):  # frees the names for the new table
        op.execute(f'ALTER INDEX "{name}" RENAME TO "{name[:50]}_old{number}"')
    layout = " PARTITION BY RANGE (at)" if partitioned else ""
    op.execute(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS "
        f"INCLUDING STORAGE INCLUDING GENERATED){layout}"
    )
    sequence = bind.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": old}).scalar()
    if sequence:  # the new table's `id` default already uses it; it must outlive the old table
        op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")
    if partitioned:
        oldest = bind.execute(sa.text(f"SELECT min(at) FROM {old}")).scalar()
        _create_months(table, oldest or datetime.now(UTC), datetime.now(UTC))
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    key = "id, at" if partitioned else "id"
    op.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{primary_key}" PRIMARY KEY ({key})')
    for _, definition, _, primary in indexes:
        if not primary:
            op.execute(_ON_TABLE.sub(f" ON {table} USING ", definition, count=1))
    for name, definition in foreign_keys:
        op.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    op.execute(f"DROP TABLE {old} CASCADE")  # CASCADE: a partitioned one's partitions
    op.execute(f"ANALYZE {table}")


def _create_months(table: str, oldest: datetime, now: datetime) -> None:
    month = date(oldest.astimezone(UTC).year, oldest.astimezone(UTC).month, 1)
    last = date(now.year + (now.month - 1 + MONTHS_AHEAD) // 12, (now.month - 1 + MONTHS_AHEAD) % 12 + 1, 1)
    while month <= last:
        following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        op.execute(
            f"CREATE TABLE {table}_{month:%Y_%m} PARTITION OF {table} FOR VALUES FROM "
            f"('{datetime(month.year, month.month, 1, tzinfo=UTC).isoformat()}') "
            f"TO ('{datetime(following.year, following.month, 1, tzinfo=UTC).isoformat()}')"
        )
        month = following
    op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
