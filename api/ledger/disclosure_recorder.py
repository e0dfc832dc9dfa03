"""What one response carried, record by record, for the access ledger.

A record (an appointment, a patient) is registered when an object is built for the response, with
its base group (`appointment`, `patient`: its id was sent). Its sensitive groups (`reason`,
`identity`, `contact`) are added only when one of their fields is actually resolved to a value:
the GraphQL default resolver (api/schema/guard.py) calls `DisclosedRecord.carried` for every
non-null value it returns. So a field skipped by `@skip`/`@include`, a field that is null in the
data, or one the grant forbids, is never recorded: the ledger holds what was sent, not what was
asked for.

The same record may be built several times in one response (a patient of two appointments, an
appointment rescheduled twice in one document), on either side of the grant's reading horizon.
Each built object gets its own handle on the shared record, which knows the side it was built on:
a purpose-bound value (authz/fields.polar `purpose_bound`) carried from an object built outside
the horizon marks the record `history`, since only the grant's history permission opens it there.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from api.data.models import Appointment, Patient
from api.ledger.access import APPOINTMENT, HISTORY, PATIENT, SCOPE_GROUPS, Disclosures
from api.scopes import LedgerGroup, Scope

__all__ = ["DisclosedRecord", "DisclosureRecorder", "FieldGroups", "sensitive_field_groups"]


@dataclass(frozen=True)
class FieldGroups:
    """"Type.field" -> the ledger groups a value of it discloses, for an object built inside the
    reading horizon and for one built outside it (purpose-bound fields add `history` there)."""

    inside: Mapping[str, int]
    outside: Mapping[str, int]

    def side(self, in_horizon: bool) -> Mapping[str, int]:
        return self.inside if in_horizon else self.outside


def sensitive_field_groups(field_scopes: Mapping[str, frozenset[str]], purpose_bound: Set[str]) -> FieldGroups:
    """Derived once per policy: from the scopes its field rules ask for, and from its
    `purpose_bound` rules (the one statement of which fields history opens); and, whatever those
    rules say, each scope's own `fields` in its group (api/scopes.py)."""
    inside: dict[str, int] = {}
    for qualified, scopes in field_scopes.items():
        mask = 0
        for scope in scopes:
            group = SCOPE_GROUPS.get(Scope.of(scope))  # None: recorded as the record itself
            mask |= group.bit if group else 0
        if mask:
            inside[qualified] = int(mask)
    for scope, group in SCOPE_GROUPS.items():
        for qualified in scope.fields:
            inside[qualified] = inside.get(qualified, 0) | group.bit
    outside = {**inside, **{field: inside.get(field, 0) | HISTORY.bit for field in purpose_bound}}
    return FieldGroups(inside, outside)


class _Record:
    """One record of the response and the groups sent of it so far (plain ints: IntFlag
    arithmetic per field is measurably slow)."""

    __slots__ = ("groups", "practice_id")

    def __init__(self, practice_id: int, groups: int) -> None:
        self.practice_id, self.groups = practice_id, groups


class DisclosedRecord:
    """One built object's handle on its record: what a value carried from it discloses depends on
    the side of the horizon the object was built on."""

    __slots__ = ("_field_groups", "_record")

    def __init__(self, record: _Record, field_groups: Mapping[str, int]) -> None:
        self._record, self._field_groups = record, field_groups

    def carried(self, field: str) -> None:
        """The response carries a value of "Type.field" for this record."""
        self._record.groups |= self._field_groups.get(field, 0)

    @property
    def field_groups(self) -> Mapping[str, int]:
        """What a value of each field carried from this object discloses (`FieldGroups.side`)."""
        return self._field_groups

    def carried_groups(self, groups: int) -> None:
        """The response carries values that disclose `groups` (of `field_groups`) for this record."""
        self._record.groups |= groups


class DisclosureRecorder:
    """The records of one request's response; `disclosures()` gives them to the ledger."""

    def __init__(self, field_groups: FieldGroups) -> None:
        self._field_groups = field_groups
        self._appointments: dict[int, _Record] = {}
        self._patients: dict[int, _Record] = {}
        self._patient_of: dict[int, int] = {}  # appointment -> its patient, for the ledger's row naming both

    def appointment(self, row: Appointment, in_horizon: bool) -> DisclosedRecord:
        self._patient_of[row.id] = row.patient_id
        return self._handle(self._appointments, row.id, row.practice_id, APPOINTMENT, in_horizon)

    def patient(self, row: Patient, in_horizon: bool) -> DisclosedRecord:
        return self.patient_record(row.id, row.practice_id, in_horizon)

    def patient_record(self, patient_id: int, practice_id: int, in_horizon: bool) -> DisclosedRecord:
        return self._handle(self._patients, patient_id, practice_id, PATIENT, in_horizon)

    def _handle(
        self, records: dict[int, _Record], record_id: int, practice_id: int, base: LedgerGroup, in_horizon: bool
    ) -> DisclosedRecord:
        record = records.get(record_id)
        if record is None:  # the same record built twice is one record, each build with its own side
            record = records[record_id] = _Record(practice_id, base.bit)
        return DisclosedRecord(record, self._field_groups.side(in_horizon))

    def disclosures(self) -> Disclosures:
        recorded = Disclosures(patient_of=self._patient_of)
        for records, into in ((self._appointments, recorded.appointments), (self._patients, recorded.patients)):
            for record_id, record in records.items():
                recorded.add(into, record_id, record.practice_id, record.groups)
        return recorded
