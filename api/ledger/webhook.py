"""Delivery of the alert outbox to the operators' webhook, signed per Standard Webhooks.

Each `AlertDelivery` row is claimed by one sender (rows locked with `FOR UPDATE SKIP LOCKED` on
PostgreSQL, then a conditional update that also serves SQLite), POSTed with the `webhook-id`,
`webhook-timestamp` and `webhook-signature` headers (HMAC-SHA256 by the `standardwebhooks`
package), and marked delivered on a 2xx answer. Otherwise it is retried after an exponential
backoff. A claim expires, so a sender that dies mid-way leaves its rows to the others: a receiver
may see a message twice (the webhook-id is stable, for it to deduplicate), never lose one.

The app runs one `WebhookSender` per worker in the background, woken by each new alert; operators
can run `partner-api alerts deliver` instead or as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from api.clock import Clock, system_clock
from api.data.database import WriterLock
from api.data.models import AlertDelivery
from api.settings import Settings

__all__ = ["BACKOFF_BASE", "DeliveryRound", "WebhookSender", "backoff"]

logger = logging.getLogger(__name__)

# The first retry after 10 s, then doubling: a receiver restarting is caught quickly, one down for
# hours is not hammered (at most `alert_webhook_max_backoff_seconds` between attempts).
BACKOFF_BASE = timedelta(seconds=10)
BATCH = 50


def backoff(attempts: int, most: timedelta) -> timedelta:
    """The wait after the `attempts`-th failed attempt."""
    wait: timedelta = BACKOFF_BASE * 2 ** min(attempts - 1, 30)
    return min(most, wait)


@dataclass(frozen=True)
class DeliveryRound:
    delivered: int
    failed: int


class WebhookSender:
    """Sends due outbox rows; `clock` is injectable so that tests make time pass without waiting."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        writer_lock: WriterLock | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.writer_lock = writer_lock or (lambda _session: nullcontext())
        self.clock = clock
        self.signer = Webhook(settings.alert_webhook_secret) if settings.alert_webhook_secret else None
        self.lease = timedelta(seconds=2 * settings.alert_webhook_timeout_seconds + 30)
        self._wake = asyncio.Event()

    @property
    def configured(self) -> bool:
        return bool(self.settings.alert_webhook_url and self.signer)

    def wake(self) -> None:
        self._wake.set()

    async def deliver_due(self) -> DeliveryRound:
        """One pass: claim the rows due now, send them, record each outcome."""
        if not self.configured:
            return DeliveryRound(0, 0)
        now = self.clock()
        claimed = await self._claim(now)
        delivered = failed = 0
        async with httpx.AsyncClient(timeout=self.settings.alert_webhook_timeout_seconds) as client:
            for delivery_id, message_id, payload, attempts in claimed:
                error = await self._send(client, message_id, payload)
                await self._settle(delivery_id, attempts + 1, error, self.clock())
                delivered, failed = (delivered + 1, failed) if error is None else (delivered, failed + 1)
        return DeliveryRound(delivered, failed)

    async def deliver_all_due(self) -> DeliveryRound:
        """Passes until nothing due is left (what failed waits for its backoff)."""
        delivered = failed = 0
        while True:
            done = await self.deliver_due()
            delivered, failed = delivered + done.delivered, failed + done.failed
            if done.delivered + done.failed < BATCH:
                return DeliveryRound(delivered, failed)

    async def run(self) -> None:
        """The app's background task: a pass whenever woken by an alert, or every poll interval."""
        while True:
            try:
                await self.deliver_all_due()
            except Exception:  # the database or the network is away: the next pass retries
                logger.exception("alert webhook delivery failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.alert_webhook_poll_seconds)
            self._wake.clear()

    async def _claim(self, now: datetime) -> list[tuple[int, str, str, int]]:
        free = or_(AlertDelivery.claimed_until.is_(None), AlertDelivery.claimed_until < now)
        due = (AlertDelivery.delivered_at.is_(None), AlertDelivery.next_attempt_at <= now, free)
        async with self.sessions() as session, self.writer_lock(session):
            candidates = select(AlertDelivery.id).where(*due).order_by(AlertDelivery.next_attempt_at).limit(BATCH)
            if session.get_bind().dialect.name == "postgresql":
                candidates = candidates.with_for_update(skip_locked=True)
            ids = (await session.execute(candidates)).scalars().all()
            if not ids:
                return []
            # Conditional: on SQLite, where nothing was locked, a row another sender took is skipped.
            rows = (
                await session.execute(
                    update(AlertDelivery)
                    .where(AlertDelivery.id.in_(ids), *due)
                    .values(claimed_until=now + self.lease)
                    .returning(
                        AlertDelivery.id, AlertDelivery.message_id, AlertDelivery.payload, AlertDelivery.attempts
                    )
                )
            ).all()
            await session.commit()
        return [tuple(row) for row in rows]  # type: ignore[misc]  # a Row is no tuple to the type checker

    async def _send(self, client: httpx.AsyncClient, message_id: str, payload: str) -> str | None:
        assert self.signer is not None
        # The real time of sending, whatever the clock: receivers reject stale timestamps (replays).
        sent_at = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": self.signer.sign(message_id, sent_at, payload),
        }
        try:
            response = await client.post(self.settings.alert_webhook_url, content=payload.encode(), headers=headers)
        except httpx.HTTPError as error:
            return f"{type(error).__name__}"[:200]
        return None if response.is_success else f"HTTP {response.status_code}"

    async def _settle(self, delivery_id: int, attempts: int, error: str | None, now: datetime) -> None:
        values: dict[str, object] = {"attempts": attempts, "claimed_until": None, "last_error": error}
        if error is None:
            values["delivered_at"] = now
        else:
            values["next_attempt_at"] = now + backoff(
                attempts, timedelta(seconds=self.settings.alert_webhook_max_backoff_seconds)
            )
            logger.warning("alert webhook attempt %d failed: %s", attempts, error)
        async with self.sessions() as session, self.writer_lock(session):
            await session.execute(update(AlertDelivery).where(AlertDelivery.id == delivery_id).values(**values))
            await session.commit()
