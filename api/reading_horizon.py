"""The reading horizon of a grant: how far back and ahead of today a partner reads who a patient is.

A partner's legitimate work is about appointments near today (reminders, the day's schedule, the
coming weeks). Patient identity, contact and the medical reason are purpose-bound
(`authz/fields.polar`): readable only for appointments inside the horizon of the partner's grant,
and for patients who have such an appointment made by the practice. Reading further back is an
explicit, expiring permission of the grant (`history_until`), for an initial import the practice
approved.

The horizon is rolling, in whole days of 24 hours around the request time: [now - days_back,
now + days_ahead). No time zone is involved, so it is the same on every worker and in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DAYS = 366  # a horizon past a year is no longer "near today": import history instead


@dataclass(frozen=True)
class ReadingHorizon:
    """Days back and ahead of the request time that a grant reads patients' identity in.

    Example: `ReadingHorizon(days_back=1, days_ahead=7)` for a reminder service.
    """

    days_back: int
    days_ahead: int
    why: str = ""

    def __post_init__(self) -> None:
        for name in ("days_back", "days_ahead"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_DAYS:
                raise ValueError(f"{name.replace('_', '-')} is a number of days from 0 to {MAX_DAYS}, not {value}")


# One per kind of seeded partner (api.data.seed.DEMO_PARTNERS): the work each does, and the days it needs.
PRACTICE_MANAGEMENT = ReadingHorizon(
    7, 90,
    "Practice-management software: the day's schedule, the week's no-shows and follow-ups, and the agenda "
    "as far ahead as practices book (the seeded agendas run two months ahead; 90 days leaves a margin).",
)
BOOKING_DIRECTORY = ReadingHorizon(
    1, 90,
    "Online booking directory: the appointments its users have coming, as far ahead as they book; the day "
    "before for a late change, no history.",
)
TELECONSULTATION = ReadingHorizon(
    7, 30,
    "Teleconsultation: today's video calls, the coming weeks, and a week back to send a prescription or a "
    "follow-up after a call.",
)
REMINDERS = ReadingHorizon(
    1, 7,
    "SMS reminders: the reminder goes out one or two days ahead; a week ahead covers weekends and holidays, "
    "a day back a reminder sent late.",
)
READ_ONLY_STATISTICS = ReadingHorizon(
    0, 0, "Activity statistics: counts need times and status, never who the patient is.",
)

#: For a grant given without --days-back/--days-ahead: the narrowest horizon that still covers the
#: most common job (the day before, the coming month). A practice widens it per grant.
DEFAULT = ReadingHorizon(
    1, 30, "Default: yesterday, today and the coming month; widen per grant for a partner that needs more.",
)

__all__ = [
    "BOOKING_DIRECTORY",
    "DEFAULT",
    "MAX_DAYS",
    "PRACTICE_MANAGEMENT",
    "READ_ONLY_STATISTICS",
    "REMINDERS",
    "TELECONSULTATION",
    "ReadingHorizon",
]
