"""`partner-api policy explain`: what a partner can do and read at a practice, and why.

Nothing is decided here. Rows: the compiled SQL filters the API uses are run against the
practice's own rows (or, when it has none of a kind, the same rule in memory on a new record of
that practice). Fields: `Authorizer.readable_fields`, as for a request; the rules named beside
each answer come from Polar queries (`field_needs_scope`, `field_with_any_grant`, `has_scope`,
`live_grant`, `purpose_bound`, `history_open`), not from a copy of the policy. A field is
answered for a record inside the grant's reading horizon and for one outside it.

About one appointment (`record=`): each row rule says whether this appointment (or its patient)
is among the rows its SQL filter gives, and each field is answered on the side of the reading
horizon the record lies on (`api.services.horizon`, as for a request). Every rule is named with
its file and line.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from polar import Variable
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.data.models import Appointment, Base, Grant, Partner, PartnerStatus, Patient, Practice
from api.services.horizon import Horizons, time_counts
from api.services.horizon import patient_inside as inside_horizon
from authz.actors import PartnerActor
from authz.adapter import SqlAlchemyFilterAdapter
from authz.engine import POLAR_CLASSES, POLICY_FILES, Authorizer, load_texts, new_oso
from authz.polar_source import PolicySources


class ExplainError(Exception):
    """An unknown or ambiguous name, worded for the operator."""


@dataclass(frozen=True)
class GrantInfo:
    grant: str
    scopes: list[str]
    live: bool
    state: str  # "live", "revoked at ...", "expired at ..."
    horizon: str  # the reading horizon and the history permission, in words


@dataclass(frozen=True)
class RowAnswer:
    resource: str
    action: str
    allowed: bool
    rows_allowed: int | None  # of the practice's rows (None about one record)
    rows_total: int | None
    through: str  # the live grant that opens it, or why none does
    rules: list[str]  # "policy.polar:72"
    how: str
    record: str | None = None  # about one record: its id; `allowed` says whether it is among the rows


@dataclass(frozen=True)
class RuleCheck:
    grant: str
    rule: str  # e.g. field_needs_scope("Patient.phone", "patients:contact")
    satisfied: bool
    why: str
    at: str | None = None  # where the rule is written: "fields.polar:75"


@dataclass(frozen=True)
class FieldAnswer:
    field: str
    readable: bool  # of a record inside the grant's reading horizon
    grant: str | None  # the grant that gives it
    checks: list[RuleCheck]
    readable_outside_horizon: bool = False  # of a record outside it (purpose-bound fields need the history permission)
    outside_why: str | None = None  # why a purpose-bound field is (not) readable outside the horizon
    record: str | None = None  # about one record: its id, and which side of the horizon it lies on
    record_in_horizon: bool | None = None

    @property
    def readable_here(self) -> bool:
        """Readable of the record asked about (on its side of the horizon), else of one inside it."""
        return self.readable_outside_horizon if self.record_in_horizon is False else self.readable

    @property
    def reason(self) -> RuleCheck | None:
        """The check to show: one that gives the field, or one that fails to."""
        return next((c for c in self.checks if c.satisfied == self.readable), self.checks[0] if self.checks else None)


@dataclass(frozen=True)
class RecordInfo:
    """The appointment asked about, and where it and its patient lie against the reading horizon."""

    appointment: str
    patient: str
    status: str
    booked_by: str  # "the practice", or the partner that booked it
    in_horizon: bool
    patient_in_horizon: bool


@dataclass(frozen=True)
class Explanation:
    partner: str
    partner_id: str
    practice: str
    practice_id: str
    at: datetime
    notes: list[str]
    grants: list[GrantInfo]
    rows: list[RowAnswer]
    fields: list[FieldAnswer]
    record: RecordInfo | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        for field, answer in zip(data["fields"], self.fields, strict=True):
            field["rule"] = answer.reason.rule if answer.reason else None
            field["rule_at"] = answer.reason.at if answer.reason else None
        return data


def explain(
    session: Session,
    partner_name: str,
    practice_name: str | None = None,
    now: datetime | None = None,
    policy_files: Sequence[Path] = POLICY_FILES,
    *,
    sources: PolicySources | None = None,
    appointment_id: str | None = None,
    field: str | None = None,
) -> Explanation:
    """Explain, from the database behind `session`, the partner's access at the practice, or to
    one appointment (`appointment_id`, whose practice it is), for every field or one (`field`)."""
    now = now or datetime.now(UTC)
    sources = sources or PolicySources.read(tuple(policy_files))
    partner = _find(session, Partner, partner_name, "partner")
    appointment = _appointment(session, appointment_id) if appointment_id else None
    if appointment is not None:
        practice = session.get_one(Practice, appointment.practice_id)
        if practice_name is not None and practice_name not in (practice.name, practice.public_id):
            raise ExplainError(f"appointment {appointment_id} is at {practice.name} ({practice.public_id})")
    elif practice_name is not None:
        practice = _find(session, Practice, practice_name, "practice")
    else:
        raise ExplainError("name a practice (--practice) or an appointment (--appointment)")
    # A session-backed adapter lets oso fetch a record's grants when it decides in memory.
    authorizer = Authorizer(load_texts(new_oso(SqlAlchemyFilterAdapter(session)), sources.texts))
    actor = PartnerActor(id=partner.id, name=partner.name, request_time=now)
    grants = list(
        session.scalars(
            select(Grant)
            .where(Grant.partner_id == partner.id, Grant.practice_id == practice.id)
            .order_by(Grant.granted_at)
        )
    )
    infos = [_grant_info(authorizer, actor, grant) for grant in grants]
    notes = []
    if partner.status != PartnerStatus.ACTIVE:
        notes.append(f"{partner.name} is {partner.status.value}: the API refuses its keys before any rule applies.")
    if not grants:
        notes.append(f"{partner.name} has no grant at {practice.name}, live or not.")
    live = [info.grant for info in infos if info.live]
    record = None if appointment is None else _record_info(session, appointment, partner, grants, now)
    records: dict[str, Base] = {}
    if appointment is not None:
        records = {"Appointment": appointment, "Patient": session.get_one(Patient, appointment.patient_id)}
    rows = [
        _row_answer(session, authorizer, actor, practice, block.name, action, live, sources, records.get(block.name))
        for block in sources.resource_blocks()
        if block.name in POLAR_CLASSES and (not records or block.name in records)
        for action in block.permissions
    ]
    every_field = _field_answers(authorizer, actor, grants, infos, sources)
    fields = [answer for answer in every_field if field in (None, answer.field)]
    if field is not None and not fields:
        named = [answer.field for answer in every_field]
        near = difflib.get_close_matches(field, named, n=3, cutoff=0.6)
        hint = f"near names: {', '.join(near)}" if near else "no rule names a field near it"
        raise ExplainError(f"no field rule names {field!r} (written Type.field, as in the schema); {hint}")
    if record is not None:
        fields = [_on_record(answer, record) for answer in fields]
    return Explanation(
        partner.name, partner.public_id, practice.name, practice.public_id, now, notes, infos, rows, fields, record
    )


def _appointment(session: Session, appointment_id: str) -> Appointment:
    found = session.scalar(select(Appointment).where(Appointment.public_id == appointment_id))
    if found is None:
        raise ExplainError(f"no appointment {appointment_id!r} (give its id, apt_...)")
    return found


def _record_info(
    session: Session, appointment: Appointment, partner: Partner, grants: list[Grant], now: datetime
) -> RecordInfo:
    """Where the appointment and its patient lie against the reading horizon, decided as for a request."""
    horizons = Horizons.of(grants, now)
    bounds = horizons.bounds.get(appointment.practice_id)
    inside = (
        time_counts(appointment, partner.id) and bounds is not None and bounds[0] <= appointment.starts_at < bounds[1]
    )
    patient = session.get_one(Patient, appointment.patient_id)
    patient_inside = session.scalar(
        select(Patient.id).where(Patient.id == patient.id, inside_horizon(horizons.groups(), partner.id)),
        horizons.parameters(),
    )
    if appointment.source_partner_id is None:
        booked_by = "the practice"
    else:
        booked_by = "this partner" if appointment.source_partner_id == partner.id else "another partner"
    return RecordInfo(
        appointment.public_id,
        patient.public_id,
        str(appointment.status.value),
        booked_by,
        inside,
        patient_inside is not None,
    )


def _on_record(answer: FieldAnswer, record: RecordInfo) -> FieldAnswer:
    kind = answer.field.split(".")[0]
    if kind == "Appointment":
        return replace(answer, record=record.appointment, record_in_horizon=record.in_horizon)
    if kind == "Patient":
        return replace(answer, record=record.patient, record_in_horizon=record.patient_in_horizon)
    return answer


# Partners and practices, found by name or public id, each typed as itself.
Named = TypeVar("Named", Partner, Practice)


def _find(session: Session, model: type[Named], name: str, what: str) -> Named:
    found = list(session.scalars(select(model).where((model.name == name) | (model.public_id == name))))
    if len(found) == 1:
        return found[0]
    if found:
        ids = ", ".join(row.public_id for row in found)
        raise ExplainError(f"several {what}s are named {name!r}: give one of their ids ({ids})")
    names = list(session.scalars(select(model.name)))
    near = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    near += [n for n in names if name.casefold() in n.casefold() and n not in near][: 5 - len(near)]
    hint = f"near names: {', '.join(near)}" if near else "no name is near it"
    raise ExplainError(f"no {what} named {name!r}; {hint}")


def _grant_info(authorizer: Authorizer, actor: PartnerActor, grant: Grant) -> GrantInfo:
    live = authorizer.oso.query_rule_once("live_grant", actor, grant)
    state = "live" if live else _why_not_live(grant, actor)
    return GrantInfo(grant.public_id, sorted(grant.scopes), live, state, _horizon(authorizer, actor, grant))


def _horizon(authorizer: Authorizer, actor: PartnerActor, grant: Grant) -> str:
    words = f"{grant.days_back} day(s) back, {grant.days_ahead} ahead"
    if authorizer.history_open(actor, grant):
        return f"{words}; history readable until {grant.history_until:%Y-%m-%d %H:%M} UTC"
    if grant.history_until is not None:
        return f"{words}; history permission ended {grant.history_until:%Y-%m-%d %H:%M} UTC"
    return f"{words}; no history permission"


def _why_not_live(grant: Grant, actor: PartnerActor) -> str:
    # The policy said no; these are the facts an operator can act on.
    assert isinstance(actor.request_time, datetime)
    if grant.revoked_at is not None:
        return f"revoked at {grant.revoked_at:%Y-%m-%d %H:%M} UTC"
    if grant.expires_at <= actor.request_time:
        return f"expired at {grant.expires_at:%Y-%m-%d %H:%M} UTC"
    return "not live under the policy's live_grant rule"


def _row_answer(
    session: Session,
    authorizer: Authorizer,
    actor: PartnerActor,
    practice: Practice,
    resource: str,
    action: str,
    live: list[str],
    sources: PolicySources,
    record: Base | None = None,
) -> RowAnswer:
    model: type[Base] = POLAR_CLASSES[resource][0]
    here = (model.id if model is Practice else model.practice_id) == practice.id  # type: ignore[attr-defined]  # the branch picks the model's column
    allowed_rows = authorizer.filter(actor.id, action, model).where(here)
    params = {"request_time": actor.request_time}
    rows_allowed: int | None = None
    rows_total: int | None = None
    record_id: str | None = None
    if record is not None:
        record_id = record.public_id  # type: ignore[attr-defined]  # appointments and patients have one
        among = allowed_rows.where(model.id == record.id)  # type: ignore[attr-defined]  # so do their ids
        allowed = session.scalar(select(func.count()).select_from(among.subquery()), params) == 1
        how = f"SQL filter: {record_id} is {'' if allowed else 'not '}among the rows"
    else:
        rows_allowed = session.scalar(select(func.count()).select_from(allowed_rows.subquery()), params) or 0
        rows_total = session.scalar(select(func.count()).select_from(model).where(here)) or 0
        if rows_total:
            allowed = rows_allowed > 0
            how = f"SQL filter: {rows_allowed} of {rows_total} rows here"
        else:
            allowed = authorizer.is_allowed(actor, action, model(practice_id=practice.id))
            how = "no rows here: the rule run in memory on a new one"
    if allowed:
        through = ", ".join(live) or "-"
    elif live:
        through = f"not given by {', '.join(live)}"
    else:
        through = "no live grant"
    rules = [f"{Path(file).name}:{line}" for file, line in sources.permission_rules(resource, action)]
    return RowAnswer(resource, action, allowed, rows_allowed, rows_total, through, rules, how, record_id)


def _field_answers(
    authorizer: Authorizer, actor: PartnerActor, grants: list[Grant], infos: list[GrantInfo], sources: PolicySources
) -> list[FieldAnswer]:
    oso = authorizer.oso
    any_grant = {r["bindings"]["f"] for r in oso.query_rule("field_with_any_grant", Variable("f"))}
    needs: dict[str, list[str]] = {}
    for result in oso.query_rule("field_needs_scope", Variable("f"), Variable("s")):
        needs.setdefault(result["bindings"]["f"], []).append(result["bindings"]["s"])
    readable = {grant.public_id: authorizer.readable_fields(actor, grant, in_horizon=True) for grant in grants}
    outside = {grant.public_id: authorizer.readable_fields(actor, grant, in_horizon=False) for grant in grants}
    horizons = {info.grant: info.horizon for info in infos}
    has_scope = {
        (grant.public_id, scope): oso.query_rule_once("has_scope", grant, scope)
        for grant in grants
        for scope in {s for scopes in needs.values() for s in scopes}
    }
    answers = []
    for field in sorted(any_grant | needs.keys(), key=lambda f: (f.split(".")[0], f)):
        checks = []
        for info in infos:
            dead = None if info.live else f"grant {info.state}"
            if field in any_grant:
                rule = f'field_with_any_grant("{field}")'
                checks.append(RuleCheck(info.grant, rule, info.live, dead or "any live grant", _at(sources, rule)))
            for scope in needs.get(field, []):
                ok = info.live and has_scope[(info.grant, scope)]
                why = dead or (f"grant has {scope}" if ok else f"grant lacks {scope}")
                rule = f'field_needs_scope("{field}", "{scope}")'
                checks.append(RuleCheck(info.grant, rule, ok, why, _at(sources, rule)))
        giving = next((g for g, fields in readable.items() if field in fields), None)
        giving_outside = next((g for g, fields in outside.items() if field in fields), None)
        outside_why = None
        if field in authorizer.purpose_bound and giving is not None:
            rule = f'purpose_bound("{field}")'
            outside_why = f"{rule}: outside the reading horizon ({horizons[giving_outside or giving]})"
            at = _at(sources, rule)
            outside_why += f" [{at}]" if at else ""
        answers.append(FieldAnswer(field, giving is not None, giving, checks, giving_outside is not None, outside_why))
    return answers


def _at(sources: PolicySources, rule: str) -> str | None:
    """Where a fact such as `field_needs_scope("Patient.phone", "patients:contact")` is written."""
    found = sources.find(rule) or sources.find(" ".join(rule.split(", ")))
    return f"{Path(found[0]).name}:{found[1]}" if found else None
