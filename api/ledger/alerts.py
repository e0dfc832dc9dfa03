"""Recording an alert for operators: the alert row and its webhook outbox row, in the caller's
transaction, so that an alert is delivered if and only if it was recorded (a transactional outbox).

Each kind is raised at most once per window for a partner, practice, window and fraction: a
warning at 50 % of the 24 h budget fires once in 24 h, not on every request past the mark. The
webhook body names the partner, key prefix and practice by name and public id, with the counts,
limits and times: never a patient.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.models import AlertDelivery, AlertKind, ExtractionAlert, Partner, PartnerKey, Practice

__all__ = ["NewAlert", "record"]


@dataclass(frozen=True)
class NewAlert:
    kind: AlertKind
    partner_id: int
    practice_id: int
    key_id: int | None
    raised_at: datetime
    patients_in_window: int
    threshold: int
    window_hours: int
    patients_refused: int = 0
    fraction: float | None = None


async def record(session: AsyncSession, alert: NewAlert) -> ExtractionAlert | None:
    """Add the alert and its outbox row to the session, unless the same one was raised in its window."""
    same = (
        ExtractionAlert.partner_id == alert.partner_id,
        ExtractionAlert.practice_id == alert.practice_id,
        ExtractionAlert.kind == alert.kind,
        ExtractionAlert.window_hours == alert.window_hours,
        ExtractionAlert.fraction.is_(None) if alert.fraction is None else ExtractionAlert.fraction == alert.fraction,
        ExtractionAlert.raised_at > alert.raised_at - timedelta(hours=alert.window_hours),
    )
    if alert.kind != AlertKind.QUARANTINE and (await session.execute(select(exists().where(*same)))).scalar_one():
        return None
    row = ExtractionAlert(**alert.__dict__)
    session.add(row)
    await session.flush()
    session.add(
        AlertDelivery(
            alert_id=row.id, message_id=f"msg_{secrets.token_hex(16)}", payload=await _payload(session, row),
            created_at=alert.raised_at, next_attempt_at=alert.raised_at, attempts=0,
        )
    )
    return row


async def _payload(session: AsyncSession, alert: ExtractionAlert) -> str:
    partner = (await session.execute(select(Partner.name).where(Partner.id == alert.partner_id))).scalar_one()
    practice = (await session.execute(select(Practice.public_id).where(Practice.id == alert.practice_id))).scalar_one()
    prefix = (
        await session.execute(select(PartnerKey.prefix).where(PartnerKey.id == alert.key_id))
    ).scalar_one_or_none()
    # Standard Webhooks' payload shape: type, timestamp, data.
    return json.dumps(
        {
            "type": f"extraction.{alert.kind.value}",
            "timestamp": alert.raised_at.isoformat(),
            "data": {
                "kind": alert.kind.value,
                "partner": partner,
                "keyPrefix": prefix,
                "practiceId": practice,
                "raisedAt": alert.raised_at.isoformat(),
                "windowHours": alert.window_hours,
                "count": alert.patients_in_window,
                "refused": alert.patients_refused,
                "threshold": alert.threshold,
                "fraction": alert.fraction,
            },
        },
        separators=(",", ":"),
    )
