"""What one response carried, record by record, for the access ledger.

A record (an appointment, a patient) is registered when an object is built for the response, with
its base group (`appointment`, `patient`: its id was sent). Its sensitive groups (`reason`,
`identity`, `contact`) are added only when one of their fields is actually resolved to a value:
the GraphQL default resolver (api/schema/guard.py) calls `DisclosedRecord.carried` for every
non-null value it returns. So a field skipped by `@skip`/`@include`, a field that is null in the
data, or one the grant forbids, is never recorded: the ledger holds what was sent, not what was
asked for. A record outside the grant's reading horizon whose purpose-bound groups were sent is
marked `history`: only the grant's history permission opens those (authz/fields.polar).
"""

from __future__ import annotations

from collections.abc import Mapping

from api.data.models import Appointment, Patient
from api.ledger.access import APPOINTMENT, PATIENT, SCOPE_GROUPS, Disclosures, through_history
from api.scopes import LedgerGroup, Scope

__all__ = ["DisclosedRecord", "DisclosureRecorder", "sensitive_field_groups"]


def sensitive_field_groups(field_scopes: Mapping[str, frozenset[str]]) -> dict[str, int]:
    """"Type.field" -> the ledger groups its value discloses, for the fields that disclose any;
    derived once per policy from the scopes its field rules ask for."""
    groups: dict[str, int] = {}
    for qualified, scopes in field_scopes.items():
        mask = 0
        for scope in scopes:
            group = SCOPE_GROUPS.get(Scope.of(scope))  # None: recorded as the record itself
            mask |= group.bit if group else 0
        if mask:
            groups[qualified] = int(mask)
    return groups


class DisclosedRecord:
    """One record of the response and the groups sent of it so far (plain ints: IntFlag
    arithmetic per field is measurably slow)."""

    __slots__ = ("_field_groups", "groups", "in_horizon", "practice_id")

    def __init__(self, practice_id: int, groups: int, in_horizon: bool, field_groups: Mapping[str, int]) -> None:
        self.practice_id, self.groups, self.in_horizon, self._field_groups = (
            practice_id,
            groups,
            in_horizon,
            field_groups,
        )

    def carried(self, field: str) -> None:
        """The response carries a value of "Type.field" for this record."""
        self.groups |= self._field_groups.get(field, 0)


class DisclosureRecorder:
    """The records of one request's response; `disclosures()` gives them to the ledger."""

    def __init__(self, field_groups: Mapping[str, int]) -> None:
        self._field_groups = field_groups
        self._appointments: dict[int, DisclosedRecord] = {}
        self._patients: dict[int, DisclosedRecord] = {}

    def appointment(self, row: Appointment, in_horizon: bool) -> DisclosedRecord:
        return self._record(self._appointments, row.id, row.practice_id, APPOINTMENT, in_horizon)

    def patient(self, row: Patient, in_horizon: bool) -> DisclosedRecord:
        return self._record(self._patients, row.id, row.practice_id, PATIENT, in_horizon)

    def _record(
        self, records: dict[int, DisclosedRecord], record_id: int, practice_id: int, base: LedgerGroup, in_horizon: bool
    ) -> DisclosedRecord:
        record = records.get(record_id)
        if record is None:  # the same record built twice (a patient of two appointments) is one record
            record = records[record_id] = DisclosedRecord(practice_id, base.bit, in_horizon, self._field_groups)
        return record

    def disclosures(self) -> Disclosures:
        recorded = Disclosures()
        for records, into in ((self._appointments, recorded.appointments), (self._patients, recorded.patients)):
            for record_id, record in records.items():
                recorded.add(into, record_id, record.practice_id, through_history(record.groups, record.in_horizon))
        return recorded
