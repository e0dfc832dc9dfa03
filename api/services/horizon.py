"""Where each of a partner's grants draws its reading horizon, for one request.

The policy says which fields are purpose-bound (`authz/fields.polar`); this module tells, for each
record, whether it lies inside the horizon of the partner's grant at its practice. The bounds are
computed once per request and practice, from the grant's days back and ahead (`api.reading_horizon`).

Only a time the practice set places an appointment near today: a partner that books or reschedules
an appointment is recorded as having set its time (`time_set_by_partner_id`), and such a time
counts for nothing but that partner's own bookings. Moving a practice's appointment into the
horizon therefore opens neither its reason nor its patient.

- an appointment is inside when its time counts (set by the practice, or by this partner on an
  appointment it booked itself) and it starts in [now - days_back, now + days_ahead) — a
  comparison with those two bounds, in Python for rows already loaded;
- a patient is inside while they have such an appointment at their practice that the practice
  made and timed (`source_partner_id` and `time_set_by_partner_id` NULL), or, for a patient the
  partner created itself with a booking, that the partner made: an EXISTS in the patients query.
  A partner booking for an existing patient, or moving one of their appointments, therefore never
  widens what it reads about them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property, lru_cache

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, bindparam, exists, false, or_, select

from api.data.models import Appointment, Grant, Patient

Bounds = tuple[datetime, datetime]


@dataclass(frozen=True)
class Horizons:
    """Each practice's reading horizon for one partner at one request time (practices without an
    unrevoked grant have none: nothing of theirs is inside)."""

    bounds: dict[int, Bounds]

    @classmethod
    def of(cls, grants: Iterable[Grant], now: datetime) -> Horizons:
        # At most one unrevoked grant per partner and practice (a unique index); a revoked one opens nothing.
        return cls({
            g.practice_id: (now - timedelta(days=g.days_back), now + timedelta(days=g.days_ahead))
            for g in grants
            if g.revoked_at is None
        })

    @cached_property
    def _by_bounds(self) -> list[tuple[Bounds, tuple[int, ...]]]:
        """The practices of each distinct horizon, in the order of the bounds."""
        practices: dict[Bounds, list[int]] = defaultdict(list)
        for practice, bounds in self.bounds.items():
            practices[bounds].append(practice)
        return [(bounds, tuple(sorted(practices[bounds]))) for bounds in sorted(practices)]

    def groups(self) -> HorizonGroups:
        """What the SQL of `appointment_inside` and `patient_inside` is built from: one branch per
        distinct horizon, with its practices."""
        return tuple(ids for _, ids in self._by_bounds)

    def parameters(self) -> dict[str, datetime]:
        """This request's bounds of each group of `groups`, by the names of their SQL parameters."""
        values: dict[str, datetime] = {}
        for i, ((low, high), _) in enumerate(self._by_bounds):
            values[f"horizon_{i}_from"], values[f"horizon_{i}_to"] = low, high
        return values


# The practices of each distinct reading horizon (`Horizons.groups`), without the bounds: the SQL
# depends on the grants alone, its parameters on the request time (`Horizons.parameters`).
HorizonGroups = tuple[tuple[int, ...], ...]


def appointment_inside(
    groups: HorizonGroups, practice_id: SQLColumnExpression[int], starts_at: SQLColumnExpression[datetime]
) -> ColumnElement[bool]:
    """Whether an appointment of that practice starting then lies between its horizon's bounds,
    as a SQL condition: one branch per distinct horizon, not per practice; the bounds are named
    parameters (`Horizons.parameters`), so that one statement serves every request time."""
    if not groups:
        return false()
    return or_(
        *(
            and_(
                practice_id.in_(ids),
                starts_at >= bindparam(f"horizon_{i}_from", type_=Appointment.starts_at.type),
                starts_at < bindparam(f"horizon_{i}_to", type_=Appointment.starts_at.type),
            )
            for i, ids in enumerate(groups)
        )
    )


@lru_cache(maxsize=1024)
def patient_inside(groups: HorizonGroups, partner_id: int) -> ColumnElement[bool]:
    """For a query over `Patient`: whether the patient has an appointment inside the horizon that
    counts for them (made by the practice, or by this partner for a patient it created). Built
    once per partner and grouping of its grants (the bounds are parameters)."""
    theirs = _THEIRS.c
    counts = or_(
        and_(theirs.source_partner_id.is_(None), theirs.time_set_by_partner_id.is_(None)),
        and_(
            theirs.source_partner_id == partner_id, Patient.source_partner_id == partner_id,
            or_(theirs.time_set_by_partner_id.is_(None), theirs.time_set_by_partner_id == partner_id),
        ),
    )
    return exists(
        select(theirs.id).where(
            theirs.patient_id == Patient.id,
            theirs.practice_id == Patient.practice_id,
            counts,
            appointment_inside(groups, theirs.practice_id, theirs.starts_at),
        )
    )


# The patient's appointments, in `patient_inside`'s EXISTS: built once (a fresh alias's column
# collection took a tenth of a compiled page's Python time). No query that uses the condition reads
# this alias otherwise, so it is never correlated away.
_THEIRS = Appointment.__table__.alias()


@dataclass(frozen=True)
class RecordFields:
    """What the partner may read of an appointment or a patient at one practice: the "Type.field"
    names on each side of its grant's reading horizon, and where that horizon lies."""

    inside: frozenset[str]
    outside: frozenset[str]
    bounds: Bounds | None

    def side(self, in_horizon: bool) -> frozenset[str]:
        return self.inside if in_horizon else self.outside

    def closed(self, in_horizon: bool) -> frozenset[str]:
        """What the horizon withholds on this side: readable inside it, not here."""
        return frozenset() if in_horizon else self._closed_outside

    @cached_property
    def _closed_outside(self) -> frozenset[str]:
        return self.inside - self.outside

    def holds(self, appointment: Appointment, partner_id: int) -> bool:
        """Whether this appointment of the practice is inside the horizon for this partner: its time
        counts (`time_counts`) and it starts between the bounds."""
        return (
            time_counts(appointment, partner_id)
            and self.bounds is not None and self.bounds[0] <= appointment.starts_at < self.bounds[1]
        )


def time_counts(appointment: Appointment, partner_id: int) -> bool:
    """Whether the appointment's time may place it inside the horizon for this partner: the practice
    set it, or the partner did on an appointment it booked itself (its own reason, its own slot)."""
    setter = appointment.time_set_by_partner_id
    return setter is None or (setter == partner_id and appointment.source_partner_id == partner_id)
