"""Where the app reads the time: one clock, chosen at the composition root (`api.http.app`).

Every request takes its instant from it once (`RequestIdentity.request_time`: windows, horizons,
expiries, budgets), so that tests and the scenario benchmark (`bench/extraction.py`) make days pass
by moving a clock, never by waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from api.timeutil import utcnow

__all__ = ["Clock", "SettableClock", "shifted", "system_clock"]

Clock = Callable[[], datetime]

system_clock: Clock = utcnow


def shifted(offset: timedelta, base: Clock = system_clock) -> Clock:
    """The system time moved by `offset`: a clock that runs at the normal pace from another instant
    (several worker processes agree on it without sharing anything)."""
    return lambda: base() + offset


class SettableClock:
    """A clock that stands still until it is set or advanced.

    Example: `clock = SettableClock(start); create_app(settings, clock=clock); clock.advance(days=1)`.
    """

    def __init__(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware value")
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now
