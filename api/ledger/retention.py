"""Retention: the access ledger is kept `PARTNER_API_LEDGER_RETENTION_DAYS`, the distinct-patient
windows only as long as the extraction defence reads them (its long window: a row whose 30-day stay
has ended counts in neither window).

Rows are deleted in batches, each its own short transaction, so that a purge of millions of
rows never holds the locks that the request path's ledger writes and window updates wait on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, select, tuple_
from sqlalchemy.orm import Session

from api.data.models import AccessRecord, Disclosure, PatientDisclosure
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


def purge(
    session: Session,
    older_than: timedelta,
    extraction_window: timedelta,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> Purged:
    """Delete the requests recorded before `now - older_than` with what they disclosed, and the
    patients' disclosures that have left the extraction's long window; commits after each batch."""
    now = now or utcnow()
    ledger_cutoff, window_cutoff = now - older_than, now - extraction_window
    records = disclosures = 0
    while ids := session.scalars(
        select(AccessRecord.id).where(AccessRecord.at < ledger_cutoff).order_by(AccessRecord.at).limit(batch_size)
    ).all():
        # Explicit rather than by the ON DELETE CASCADE, to count them.
        disclosures += _deleted(session, delete(Disclosure).where(Disclosure.access_id.in_(ids)))
        records += _deleted(session, delete(AccessRecord).where(AccessRecord.id.in_(ids)))
        session.commit()
    windows = 0
    key = PatientDisclosure.partner_id, PatientDisclosure.practice_id, PatientDisclosure.patient_id
    stale = PatientDisclosure.month_first_at < window_cutoff
    while True:
        # In index order: each batch starts past the entries the previous ones deleted, never a scan of the table.
        batch = select(*key).where(stale).order_by(PatientDisclosure.month_first_at).limit(batch_size)
        # `stale` again: a request may have disclosed the patient anew since the batch was chosen.
        deleted = _deleted(session, delete(PatientDisclosure).where(tuple_(*key).in_(batch), stale))
        session.commit()
        windows += deleted
        if deleted < batch_size:
            break
    return Purged(ledger_cutoff, records, disclosures, window_cutoff, windows)
