"""Retention: the access ledger is kept `PARTNER_API_LEDGER_RETENTION_DAYS`, the distinct-patient
windows only as long as the extraction defence reads them (its long window: a row whose 30-day stay
has ended counts in neither window).

Rows are deleted in batches, each its own short transaction, so that a purge of millions of
rows never holds the locks that the request path's ledger writes and window updates wait on. On
PostgreSQL the ledger is partitioned by month (api/ledger/partitions.py): a month wholly past the
retention is dropped at once, whatever its size, and the months ahead are created; a month only
partly past it is kept until it is wholly past (the ledger is kept its retention, rounded up to
whole months), and only rows outside the monthly partitions (the DEFAULT one) are deleted in batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, and_, delete, select, text, tuple_
from sqlalchemy.orm import Session

from api.data.models import AccessRecord, Disclosure, PatientDisclosure
from api.ledger import partitions
from api.timeutil import utcnow


def _deleted(session: Session, statement: Delete) -> int:
    """Rows deleted by `statement` (a DML statement's result is a cursor result, typed as a plain one)."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount

BATCH_SIZE = 5000


@dataclass(frozen=True)
class Purged:
    ledger_cutoff: datetime
    access_records: int
    disclosures: int
    window_cutoff: datetime
    patient_disclosures: int
    months_dropped: tuple[str, ...] = ()  # PostgreSQL: the partitions dropped whole
    rows_in_months_dropped: int = 0  # their rows, as the planner's statistics estimate them


def purge(
    session: Session,
    older_than: timedelta,
    extraction_window: timedelta,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    short_window: timedelta = timedelta(hours=24),
) -> Purged:
    """Delete the requests recorded before `now - older_than` with what they disclosed, and the
    patients' disclosures that have left both extraction windows (the long one, and the short one: a
    patient read again today keeps counting today, however long ago their 30 days began); commits
    after each batch."""
    now = now or utcnow()
    ledger_cutoff, window_cutoff = now - older_than, now - extraction_window
    records = disclosures = 0
    dropped: list[partitions.Month] = []
    estimated = 0
    deleted_before = ledger_cutoff
    if partitions.is_partitioned(session.connection()):
        estimated = _estimated_rows(session, ledger_cutoff)
        dropped = partitions.drop_months_before(session.connection(), ledger_cutoff)
        partitions.create_ahead(session.connection(), now)
        session.commit()
        deleted_before = partitions.first_kept_month(ledger_cutoff)
    while ids := session.scalars(
        select(AccessRecord.id).where(AccessRecord.at < deleted_before).order_by(AccessRecord.at).limit(batch_size)
    ).all():
        # `at` too: on PostgreSQL, only the partitions that can hold them are read.
        older = Disclosure.at < deleted_before
        disclosures += _deleted(session, delete(Disclosure).where(Disclosure.access_id.in_(ids), older))
        records += _deleted(session, delete(AccessRecord).where(AccessRecord.id.in_(ids)))
        session.commit()
    windows = 0
    key = PatientDisclosure.partner_id, PatientDisclosure.practice_id, PatientDisclosure.patient_id
    stale = and_(PatientDisclosure.month_first_at < window_cutoff, PatientDisclosure.day_first_at < now - short_window)
    while True:
        # In index order: each batch starts past the entries the previous ones deleted, never a scan of the table.
        batch = select(*key).where(stale).order_by(PatientDisclosure.month_first_at).limit(batch_size)
        # `stale` again: a request may have disclosed the patient anew since the batch was chosen.
        deleted = _deleted(session, delete(PatientDisclosure).where(tuple_(*key).in_(batch), stale))
        session.commit()
        windows += deleted
        if deleted < batch_size:
            break
    return Purged(
        ledger_cutoff, records, disclosures, window_cutoff, windows, tuple(m.name for m in dropped), estimated
    )


def _estimated_rows(session: Session, cutoff: datetime) -> int:
    """The rows of the months about to be dropped, from the statistics: counting them would cost a scan."""
    names = [
        month.name
        for table in partitions.PARTITIONED
        for month in partitions.months(session.connection(), table)
        if month.end <= partitions.first_kept_month(cutoff).date()
    ]
    if not names:
        return 0
    estimate = session.execute(
        text("SELECT coalesce(sum(greatest(reltuples, 0)), 0) FROM pg_class WHERE relname = ANY(:names)"),
        {"names": names},
    ).scalar_one()
    return int(estimate)
