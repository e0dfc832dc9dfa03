"""Policy tests as data: the cases of `authz/policy_tests/*.yaml`, decided as the app decides.

A case describes one grant and asks one question, in the words of a policy author:

    - name: a partner without the contact scope never reads a phone
      grant: {scopes: [appointments:read, patients:identity]}
      field: Patient.phone
      expect: deny

    - name: a writer cancels appointments
      grant: {scopes: [appointments:write], expired: false}
      action: cancel
      resource: Appointment
      expect: allow

`grant` may also say `expired: true`, `revoked: true`, `other_partner: true` (the grant is
another partner's), `other_practice: true` (it is for another practice) or `history: live` /
`history: expired` (its permission to read history); `grant: none`, or no `grant` line, means no
grant at all. A field case may say `horizon: outside` (the record lies outside the grant's reading
horizon); it is `inside` otherwise. `appointment` sets the world's appointment:
`{source_partner: me}` (the partner booked it; `other`, another partner did; `none`, the
practice made it: the default) and `{status: cancelled}` (any status; `booked` by default):

    - name: a writer cancels its own bookings
      grant: {scopes: [appointments:write]}
      appointment: {source_partner: me}
      action: cancel
      resource: Appointment
      expect: allow

Each case is decided on its own small world, in an in-memory SQLite database and rolled back
after it: one practice holding one record of each kind, another practice, the partner and
another partner, and the grant. A row case runs the compiled SQL filter (`Authorizer.filter`)
there with the request time bound; a field case asks `Authorizer.readable_fields` on the
partner's grants at the practice, as `api.services.readable_fields.ReadableFields` does for a request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from api.data import models
from api.scopes import Scope
from authz.actors import PartnerActor
from authz.engine import POLAR_CLASSES, POLICY_DIR, Authorizer

CASES_DIR = POLICY_DIR / "policy_tests"
RESOURCES = {name: cls for name, (cls, _) in POLAR_CLASSES.items() if name != "Partner"}
_CASE_KEYS = {"name", "grant", "field", "resource", "action", "expect", "horizon", "appointment"}
_APPOINTMENT_KEYS = {"source_partner", "status"}
_SOURCE_PARTNERS = ("none", "me", "other")
_GRANT_KEYS = {"scopes", "expired", "revoked", "other_partner", "other_practice", "history"}
_HISTORY = {"live", "expired"}


class CaseError(ValueError):
    """A case file that cannot be read as cases: the message names the file and line."""


@dataclass(frozen=True)
class GrantSpec:
    scopes: frozenset[Scope]
    expired: bool = False
    revoked: bool = False
    other_partner: bool = False
    other_practice: bool = False
    history: str | None = None  # "live" or "expired": the grant's permission to read history


@dataclass(frozen=True)
class AppointmentSpec:
    source_partner: str = "none"  # who booked it: "none" (the practice), "me" or "other" (another partner)
    status: models.AppointmentStatus = models.AppointmentStatus.BOOKED


@dataclass(frozen=True)
class PolicyCase:
    name: str
    grant: GrantSpec | None
    expect_allow: bool
    file: Path
    line: int
    field: str | None = None
    resource: str | None = None
    action: str = "read"
    in_horizon: bool = True
    appointment: AppointmentSpec = AppointmentSpec()

    @property
    def location(self) -> str:
        return f"{_display(self.file)}:{self.line}"

    @property
    def question(self) -> str:
        where = "" if self.in_horizon else " outside the horizon"
        return f"read {self.field}{where}" if self.field else f"{self.action} {self.resource}"


@dataclass(frozen=True)
class CaseResult:
    case: PolicyCase
    allowed: bool

    @property
    def passed(self) -> bool:
        return self.allowed == self.case.expect_allow

    def __str__(self) -> str:
        if self.passed:
            return f"PASS  {self.case.location}  {self.case.name}"
        got, expected = ("allow", "deny") if self.allowed else ("deny", "allow")
        return f"FAIL  {self.case.location}  {self.case.name}: {self.case.question} expected {expected}, got {got}"


# ---------------------------------------------------------------------------
# Reading cases
# ---------------------------------------------------------------------------


def case_files(paths: Iterable[Path] = (CASES_DIR,)) -> list[Path]:
    """The YAML files named, and those inside the directories named."""
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        elif path.is_file():
            files.append(path)
        else:
            raise CaseError(f"{path}: no such file or directory")
    return files


def load_cases(paths: Iterable[Path] = (CASES_DIR,)) -> list[PolicyCase]:
    cases: list[PolicyCase] = []
    seen: dict[tuple[Path, str], PolicyCase] = {}
    for file in case_files(paths):
        for case in _cases_of(file):
            earlier = seen.setdefault((file, case.name), case)
            if earlier is not case:
                raise CaseError(f"{case.location}: the name {case.name!r} is used already at line {earlier.line}")
            cases.append(case)
    return cases


def _cases_of(file: Path) -> Iterator[PolicyCase]:
    text = file.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CaseError(f"{_display(file)}: not valid YAML: {error}") from None
    if data is None:
        return
    if not isinstance(data, list) or node is None:
        raise CaseError(f"{_display(file)}: a case file is a list of cases (lines starting with `- name:`)")
    for item, item_node in zip(data, node.value, strict=True):
        yield _case(item, file, item_node.start_mark.line + 1)


def _case(item: Any, file: Path, line: int) -> PolicyCase:
    where = f"{_display(file)}:{line}"

    def fail(message: str) -> CaseError:
        return CaseError(f"{where}: {message}")

    if not isinstance(item, dict):
        raise fail("a case is a mapping with name, grant, expect and either field or resource")
    _refuse_unknown_keys(item, _CASE_KEYS, "a case", fail)
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail("every case needs a `name` saying what it checks")
    if item.get("expect") not in ("allow", "deny"):
        raise fail(f"{name!r}: `expect` is allow or deny")
    field, resource, action = item.get("field"), item.get("resource"), item.get("action", "read")
    if (field is None) == (resource is None):
        raise fail(f"{name!r}: give either `field: Type.field` or `resource:` (with `action:`), not both")
    if field is not None and (not isinstance(field, str) or field.count(".") != 1 or action != "read"):
        raise fail(f"{name!r}: `field` is written Type.field, as in the GraphQL schema, and is only read")
    if resource is not None and resource not in RESOURCES:
        raise fail(f"{name!r}: unknown resource {resource!r}; known: {', '.join(RESOURCES)}")
    if not isinstance(action, str):
        raise fail(f"{name!r}: `action` is a word such as read or cancel")
    horizon = item.get("horizon", "inside")
    if horizon not in ("inside", "outside") or (resource is not None and "horizon" in item):
        raise fail(f"{name!r}: `horizon` is inside or outside, and only for a field case")
    grant = _grant(item.get("grant"), fail)
    appointment = _appointment(item.get("appointment", {}), fail)
    if resource == "Grant" and grant is None:
        raise fail(f"{name!r}: a case about Grant needs a grant: it is the record asked about")
    return PolicyCase(
        name=name.strip(),
        grant=grant,
        expect_allow=item["expect"] == "allow",
        file=file,
        line=line,
        field=field,
        resource=resource,
        action=action,
        in_horizon=horizon == "inside",
        appointment=appointment,
    )


def _refuse_unknown_keys(
    item: dict[Any, Any], known: set[str], what: str, fail: Callable[[str], CaseError], kind: str = ""
) -> None:
    unknown = set(item) - known
    if unknown:
        listed = ", ".join(sorted(map(str, unknown)))
        raise fail(f"unknown {kind}key(s) {listed}; {what} has: {', '.join(sorted(known))}")


def _grant(value: Any, fail: Callable[[str], CaseError]) -> GrantSpec | None:
    if value is None or value == "none":
        return None
    if not isinstance(value, dict):
        raise fail("`grant` is a mapping such as {scopes: [appointments:read]}, or none")
    _refuse_unknown_keys(value, _GRANT_KEYS, "a grant", fail, "grant ")
    scopes = value.get("scopes", [])
    known = {s.value for s in Scope}
    if not isinstance(scopes, list) or not set(scopes) <= known:
        raise fail(f"unknown scope(s) in {scopes!r}; known: {', '.join(sorted(known))}")
    history = value.get("history")
    if history is not None and history not in _HISTORY:
        raise fail(f"`history` is {' or '.join(sorted(_HISTORY))}")
    flags = {key: value.get(key, False) for key in _GRANT_KEYS - {"scopes", "history"}}
    if not all(isinstance(flag, bool) for flag in flags.values()):
        raise fail(f"{', '.join(sorted(flags))} are true or false")
    return GrantSpec(scopes=frozenset(Scope(s) for s in scopes), history=history, **flags)


def _appointment(value: Any, fail: Callable[[str], CaseError]) -> AppointmentSpec:
    if not isinstance(value, dict):
        raise fail("`appointment` is a mapping such as {source_partner: me, status: cancelled}")
    _refuse_unknown_keys(value, _APPOINTMENT_KEYS, "an appointment", fail, "appointment ")
    source = value.get("source_partner", "none")
    if source not in _SOURCE_PARTNERS:
        raise fail(f"`source_partner` is {', '.join(_SOURCE_PARTNERS)} (who booked it; none: the practice)")
    statuses = [s.value for s in models.AppointmentStatus]
    status = value.get("status", models.AppointmentStatus.BOOKED.value)
    if status not in statuses:
        raise fail(f"unknown appointment status {status!r}; known: {', '.join(statuses)}")
    return AppointmentSpec(source, models.AppointmentStatus(status))


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------
# Running cases
# ---------------------------------------------------------------------------


def run_cases(cases: Sequence[PolicyCase], authorizer: Authorizer | None = None) -> list[CaseResult]:
    authorizer = authorizer or Authorizer()
    engine = case_engine()
    try:
        return [run_case(case, authorizer, engine) for case in cases]
    finally:
        engine.dispose()


def case_engine() -> Engine:
    """An empty in-memory SQLite database with the application's tables."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    models.Base.metadata.create_all(engine)
    return engine


def run_case(case: PolicyCase, authorizer: Authorizer, engine: Engine) -> CaseResult:
    """Decide the case on its own little world, rolled back afterwards."""
    now = datetime.now(UTC)
    with Session(engine) as session:
        world = _World.build(session, case.grant, now, case.appointment)
        if case.field is not None:
            allowed = case.field in world.readable_fields(authorizer, case.in_horizon)
        else:
            assert case.resource is not None
            allowed = world.row_allowed(authorizer, case.resource, case.action)
        session.rollback()
    return CaseResult(case, allowed)


@dataclass
class _World:
    """One practice ("here") with one record of each kind, another practice, two partners."""

    session: Session
    now: datetime
    me: models.Partner
    here: models.Practice
    rows: dict[str, Any]

    @classmethod
    def build(
        cls, session: Session, spec: GrantSpec | None, now: datetime, booking: AppointmentSpec = AppointmentSpec()
    ) -> _World:
        me, other = models.Partner(name="me"), models.Partner(name="other")
        here = models.Practice(name="here", address="1 rue Ici, Paris")
        elsewhere = models.Practice(name="elsewhere", address="2 rue Ailleurs, Lyon")
        doctor = models.Practitioner(
            first_name="Claire", last_name="Martin", specialty="généraliste", rpps="10000000001"
        )
        session.add_all([me, other, here, elsewhere, doctor])
        session.flush()
        membership = models.PracticeMembership(practice_id=here.id, practitioner_id=doctor.id)
        patient = models.Patient(
            practice_id=here.id,
            first_name="Jeanne",
            last_name="Durand",
            gender=models.Gender.FEMALE,
            birth_date=date(1980, 1, 1),
            phone="+33612345678",
            email="jeanne@example.fr",
        )
        session.add_all([membership, patient])
        session.flush()
        starts = now + timedelta(days=7)
        appointment = models.Appointment(
            practice_id=here.id,
            practitioner_id=doctor.id,
            patient_id=patient.id,
            starts_at=starts,
            ends_at=starts + timedelta(minutes=20),
            reason="Motif",
            internal_note="Note interne",
            change_seq=1,
            status=booking.status,
            source_partner_id={"me": me.id, "other": other.id}.get(booking.source_partner),
        )
        tombstone = models.AppointmentTombstone(public_id="apt_deleted", practice_id=here.id, change_seq=2)
        rows: dict[str, Any] = {
            "Practice": here,
            "Practitioner": membership,
            "Patient": patient,
            "Appointment": appointment,
            "DeletedAppointment": tombstone,
        }
        session.add_all([appointment, tombstone])
        if spec is not None:
            grant = models.Grant(
                partner_id=(other if spec.other_partner else me).id,
                practice_id=(elsewhere if spec.other_practice else here).id,
                granted_at=now - timedelta(days=30),
                expires_at=now - timedelta(minutes=1) if spec.expired else now + timedelta(days=30),
                revoked_at=now - timedelta(minutes=1) if spec.revoked else None,
                history_until={"live": now + timedelta(days=7), "expired": now - timedelta(minutes=1)}.get(
                    spec.history or ""
                ),
            )
            grant.set_scopes(set(spec.scopes))
            session.add(grant)
            rows["Grant"] = grant
        session.flush()
        return cls(session, now, me, here, rows)

    @property
    def actor(self) -> PartnerActor:
        return PartnerActor(id=self.me.id, name=self.me.name, request_time=self.now)

    def row_allowed(self, authorizer: Authorizer, resource: str, action: str) -> bool:
        statement = authorizer.filter(self.me.id, action, RESOURCES[resource])
        return self.rows[resource] in self.session.scalars(statement, {"request_time": self.now}).all()

    def readable_fields(self, authorizer: Authorizer, in_horizon: bool) -> frozenset[str]:
        # As `api.services.readable_fields.ReadableFields.at_practices`: the union over the partner's grants here.
        grants = self.session.scalars(
            select(models.Grant).where(models.Grant.partner_id == self.me.id, models.Grant.practice_id == self.here.id)
        )
        readable: frozenset[str] = frozenset()
        for grant in grants:
            readable |= authorizer.readable_fields(self.actor, grant, in_horizon=in_horizon)
        return readable
