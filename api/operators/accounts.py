"""Operator use cases: partners, keys and grants. Shared by the CLI, the seeder and the tests.

Every change takes effect on the partner's very next request: keys are read anew by every
authentication, and the grants cached between requests (api/identity/grant_cache.py) are keyed by
the partner's grants version, which a database trigger bumps on every change to its grants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from api import reading_horizon
from api.data.models import Grant, KeyMode, Partner, PartnerKey, PartnerStatus, Practice
from api.identity.keys import issue_key
from api.reading_horizon import ReadingHorizon
from api.scopes import Scope
from api.timeutil import utcnow

DEFAULT_GRANT_DURATION = timedelta(days=365)

# The accounts operators name: one of these, each typed as itself.
Named = TypeVar("Named", Partner, Practice)


class OperatorError(Exception):
    """A refusal worded for the operator (unknown name, bad input)."""


@dataclass(frozen=True)
class NewKey:
    partner: str
    prefix: str
    token: str  # shown once


def _one(session: Session, model: type[Named], name: str, what: str) -> Named:
    found = session.scalars(select(model).where(model.name == name)).all()
    if not found:
        near = session.scalars(select(model.name).where(model.name.ilike(f"%{name[:4]}%")).limit(5)).all()
        hint = f" (did you mean: {', '.join(near)}?)" if near else ""
        raise OperatorError(f"no {what} named {name!r}{hint}")
    if len(found) > 1:
        raise OperatorError(f"several {what}s are named {name!r}; use its public id")
    return found[0]


def find_partner(session: Session, name: str) -> Partner:
    return _one(session, Partner, name, "partner")


def find_practice(session: Session, name: str) -> Practice:
    if name.startswith("prc_"):
        practice = session.scalar(select(Practice).where(Practice.public_id == name))
        if practice is None:
            raise OperatorError(f"no practice with id {name!r}")
        return practice
    return _one(session, Practice, name, "practice")


def create_partner(session: Session, name: str) -> Partner:
    name = name.strip()
    if not name or len(name) > 100:
        raise OperatorError("a partner name has 1 to 100 characters")
    if session.scalar(select(Partner).where(Partner.name == name)):
        raise OperatorError(f"a partner named {name!r} exists already")
    partner = Partner(name=name)
    session.add(partner)
    session.flush()
    return partner


def set_partner_status(session: Session, name: str, status: PartnerStatus) -> Partner:
    partner = find_partner(session, name)
    partner.status = status
    return partner


# An INTEGER column on both databases (PostgreSQL refused a larger limit with a DataError).
LARGEST_LIMIT = 2**31 - 1
LABEL_LENGTH = 100  # partner_keys.label


def issue_partner_key(
    session: Session,
    name: str,
    label: str | None = None,
    expires_at: datetime | None = None,
    mode: KeyMode = KeyMode.TRUSTED,
) -> NewKey:
    """A new key; `trusted` (the default) runs only the partner's registered documents."""
    partner = find_partner(session, name)
    if expires_at is not None and expires_at <= utcnow():
        raise OperatorError("a key's expiry must be in the future")
    if label is not None and len(label) > LABEL_LENGTH:
        raise OperatorError(f"a key's label has at most {LABEL_LENGTH} characters")
    issued = issue_key()
    session.add(
        PartnerKey(
            partner_id=partner.id,
            prefix=issued.prefix,
            secret_hash=issued.secret_hash,
            label=label,
            expires_at=expires_at,
            mode=mode,
        )
    )
    session.flush()
    return NewKey(partner=partner.name, prefix=issued.prefix, token=issued.token)


def list_keys(session: Session, name: str) -> list[PartnerKey]:
    partner = find_partner(session, name)
    return list(session.scalars(select(PartnerKey).where(PartnerKey.partner_id == partner.id).order_by(PartnerKey.id)))


def set_key_mode(session: Session, prefix: str, mode: KeyMode) -> PartnerKey:
    """Switch a key between `trusted` and `open`; it counts from the key's next request."""
    key = session.scalar(select(PartnerKey).where(PartnerKey.prefix == prefix))
    if key is None:
        raise OperatorError(f"no key with prefix {prefix!r}")
    key.mode = mode
    session.flush()
    return key


def revoke_key(session: Session, prefix: str) -> PartnerKey:
    key = session.scalar(select(PartnerKey).where(PartnerKey.prefix == prefix))
    if key is None:
        raise OperatorError(f"no key with prefix {prefix!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def release_key(session: Session, prefix: str) -> PartnerKey:
    """Lift a key's quarantine; its distinct-patient budgets stay as they are (nothing is forgiven)."""
    key = session.scalar(select(PartnerKey).where(PartnerKey.prefix == prefix))
    if key is None:
        raise OperatorError(f"no key with prefix {prefix!r}")
    if key.quarantined_at is None:
        raise OperatorError(f"key {prefix} is not quarantined")
    key.quarantined_at = None
    return key


def set_quarantine_on_refusal(session: Session, name: str, enabled: bool) -> Partner:
    partner = find_partner(session, name)
    partner.quarantine_on_refusal = enabled
    return partner


def live_grant(session: Session, partner: Partner, practice: Practice) -> Grant | None:
    """The grant not yet revoked between them (the database allows at most one)."""
    return session.scalar(
        select(Grant).where(
            Grant.partner_id == partner.id, Grant.practice_id == practice.id, Grant.revoked_at.is_(None)
        )
    )


def _horizon(days_back: int, days_ahead: int) -> ReadingHorizon:
    try:
        return ReadingHorizon(days_back, days_ahead)
    except ValueError as error:
        raise OperatorError(str(error)) from None


def grant_practice(
    session: Session,
    partner_name: str,
    practice_name: str,
    scopes: set[Scope],
    expires_at: datetime | None = None,
    horizon: tuple[int, int] | None = None,
) -> Grant:
    """`horizon`: (days back, days ahead) of the reading horizon; default `api.reading_horizon.DEFAULT`."""
    partner, practice = find_partner(session, partner_name), find_practice(session, practice_name)
    if not scopes:
        raise OperatorError("a grant needs at least one scope")
    reading = _horizon(*horizon) if horizon is not None else reading_horizon.DEFAULT
    expires_at = expires_at or utcnow() + DEFAULT_GRANT_DURATION
    if expires_at <= utcnow():
        raise OperatorError("a grant's expiry must be in the future")
    if live_grant(session, partner, practice) is not None:
        raise OperatorError(f"{partner.name} already has a grant at {practice.name}: change its scopes or revoke it")
    grant = Grant(
        partner_id=partner.id,
        practice_id=practice.id,
        expires_at=expires_at,
        days_back=reading.days_back,
        days_ahead=reading.days_ahead,
    )
    grant.set_scopes(scopes)
    session.add(grant)
    session.flush()
    return grant


def change_grant(
    session: Session,
    partner_name: str,
    practice_name: str,
    scopes: set[Scope] | None = None,
    expires_at: datetime | None = None,
    days_back: int | None = None,
    days_ahead: int | None = None,
) -> Grant:
    partner, practice = find_partner(session, partner_name), find_practice(session, practice_name)
    grant = live_grant(session, partner, practice)
    if grant is None:
        raise OperatorError(f"{partner.name} has no grant at {practice.name}")
    reading = _horizon(
        grant.days_back if days_back is None else days_back, grant.days_ahead if days_ahead is None else days_ahead
    )
    grant.days_back, grant.days_ahead = reading.days_back, reading.days_ahead
    if scopes is not None:
        if not scopes:
            raise OperatorError("a grant needs at least one scope; revoke it instead")
        grant.set_scopes(scopes)
    if expires_at is not None:
        if expires_at <= utcnow():
            raise OperatorError("a grant's expiry must be in the future; revoke it instead")
        grant.expires_at = expires_at
    return grant


def allow_history(session: Session, partner_name: str, practice_name: str, until: datetime | None) -> Grant:
    """Let the partner read outside its reading horizon until `until` (an initial import the practice
    approved); `None` withdraws the permission at once."""
    partner, practice = find_partner(session, partner_name), find_practice(session, practice_name)
    grant = live_grant(session, partner, practice)
    if grant is None:
        raise OperatorError(f"{partner.name} has no grant at {practice.name}")
    if until is not None:
        if until <= utcnow():
            raise OperatorError("the history permission must end in the future; withdraw it instead")
        if until > grant.expires_at:
            raise OperatorError(
                f"the history permission cannot outlast the grant (it expires {grant.expires_at:%Y-%m-%d})"
            )
    grant.history_until = until
    return grant


# The limits an operator may set on a grant, each replacing the computed one or bounding it (NULL: computed).
GRANT_LIMITS = ("max_patients_per_window", "patients_daily_cap", "patients_monthly_cap", "max_changes_per_day")


def set_grant_limits(session: Session, partner_name: str, practice_name: str, **limits: int | None) -> Grant:
    """Set (an int) or clear (None) the live grant's limits named in `limits` (GRANT_LIMITS)."""
    partner, practice = find_partner(session, partner_name), find_practice(session, practice_name)
    grant = live_grant(session, partner, practice)
    if grant is None:
        raise OperatorError(f"{partner.name} has no grant at {practice.name}")
    for name, value in limits.items():
        if name not in GRANT_LIMITS:
            raise OperatorError(f"no limit {name!r}: one of {', '.join(GRANT_LIMITS)}")
        if value is not None and not 1 <= value <= LARGEST_LIMIT:
            raise OperatorError(f"{name} must be from 1 to {LARGEST_LIMIT:,} (or none, to compute it)")
        setattr(grant, name, value)
    return grant


def revoke_grant(session: Session, partner_name: str, practice_name: str) -> Grant:
    partner, practice = find_partner(session, partner_name), find_practice(session, practice_name)
    grant = live_grant(session, partner, practice)
    if grant is None:
        raise OperatorError(f"{partner.name} has no grant at {practice.name}")
    grant.revoked_at = utcnow()
    return grant
