"""The scopes a practice can grant to a partner: the one table the rest of the code derives from.

One row per scope holds all that is said of it:

- its value (`appointments:read`) and `description`: the CLI, the schema's `@requiresScopes` and the
  docs' scope tables are made from them;
- its grant column (`Scope.column`): the `Grant` model's boolean columns and the Grant fields oso
  lets the policy read are made from it;
- how the access ledger records the fields it opens (`ledger`): a `LedgerGroup` of its own (a bit
  of `disclosures.field_groups` and `patient_field_groups`, and a `with_<name>` column of the
  exposure report), or
  `AS_RECORD` when its fields are the appointment and patient records themselves;
- with a group of its own, the fields whose values hold its data (`fields`): the ledger records them
  in its group whatever rule a released policy gives them (what a field holds is not the policy's to
  say; a policy letting any grant read phones still marks each phone sent as `contact`).

What cannot be derived from Python, the policy's `has_scope` rule and the fields a scope opens
(`authz/*.polar`), and the migration adding the column, is checked against this table by
`tests/test_scope_table.py`; docs/policy-guide.md ("Adding a scope") lists the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal


@dataclass(frozen=True)
class LedgerGroup:
    """A group of fields the access ledger records apart, so that the exposure report can count it.

    Example: `LedgerGroup("reason", bit=2, counted_per="appointment", holds="the medical reason")`.

    - `name`: the group's name in reports (`field_groups: reason`), and its `with_reason` column;
    - `bit`: its bit in `disclosures.field_groups` and `patient_field_groups`. Stored in the ledger:
      never renumber or reuse one;
    - `counted_per`: what the report's `with_<name>` counts, the patients or the appointments it
      was disclosed with;
    - `holds`: what the group holds, for the docs.
    """

    name: str
    bit: int
    counted_per: Literal["patient", "appointment"]
    holds: str


# The fields of a scope recorded as the appointment or patient record itself, whose group the
# ledger always sets (`api.ledger.access.RECORD_GROUPS`): times, status, the patient's opaque id.
AS_RECORD: Final = "record"


@dataclass(frozen=True)
class ScopeRow:
    """One scope: its value, what it lets a partner do, and how the ledger records what it opens."""

    value: str
    description: str
    ledger: LedgerGroup | Literal["record"]
    fields: tuple[str, ...] = ()  # "Type.field"; with a group of its own


class Scope(StrEnum):
    """The scopes, one row each (see the module's docstring for what derives from a row)."""

    # Set by `__new__` from the row: typed here for readers and type checkers.
    description: str
    ledger: LedgerGroup | Literal["record"]
    fields: tuple[str, ...]

    def __new__(cls, row: ScopeRow) -> Scope:
        scope = str.__new__(cls, row.value)
        scope._value_ = row.value
        scope.description = row.description
        scope.ledger = row.ledger
        scope.fields = row.fields
        return scope

    APPOINTMENTS_READ = ScopeRow(
        "appointments:read",
        "See the practice, its practitioners and its appointments (times, status).",
        ledger=AS_RECORD,
    )
    APPOINTMENTS_WRITE = ScopeRow(
        "appointments:write",
        "Book, reschedule and cancel appointments at the practice.",
        ledger=AS_RECORD,
    )
    PATIENTS_IDENTITY = ScopeRow(
        "patients:identity",
        "Read patients' names, gender and birth date.",
        ledger=LedgerGroup("identity", bit=8, counted_per="patient", holds="names, gender, birth date"),
        fields=("Patient.firstName", "Patient.lastName", "Patient.gender", "Patient.birthDate"),
    )
    PATIENTS_CONTACT = ScopeRow(
        "patients:contact",
        "Read patients' phone number and e-mail address.",
        ledger=LedgerGroup("contact", bit=16, counted_per="patient", holds="phone, e-mail"),
        fields=("Patient.phone", "Patient.email"),
    )
    APPOINTMENTS_REASON = ScopeRow(
        "appointments:reason",
        "Read the medical reason of appointments (sensitive health data).",
        ledger=LedgerGroup("reason", bit=2, counted_per="appointment", holds="the medical reason"),
        fields=("Appointment.reason",),
    )

    @classmethod
    def of(cls, value: str) -> Scope:
        """The scope whose value is `value` (`Scope(value)`, typed: the constructor takes a row)."""
        for scope in cls:
            if scope.value == value:
                return scope
        raise ValueError(f"{value!r} is not a scope")

    @property
    def column(self) -> str:
        """Name of the boolean column of `grants` that holds this scope (and of the Polar field)."""
        return self.value.replace(":", "_")

    @property
    def group(self) -> LedgerGroup | None:
        """The ledger group of its own, None when its fields are recorded as the record itself."""
        return self.ledger if isinstance(self.ledger, LedgerGroup) else None


def parse_scopes(text: str) -> set[Scope]:
    """Parse a comma-separated list such as `appointments:read,patients:identity`."""
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = names - {s.value for s in Scope}
    if unknown:
        raise ValueError(
            f"unknown scope(s): {', '.join(sorted(unknown))}; known: {', '.join(s.value for s in Scope)}"
        )
    return {Scope.of(name) for name in names}


def markdown_table() -> str:
    """The scopes as the docs show them (README, docs/policy-guide.md); tests/test_scope_table.py
    fails when a doc's copy differs."""
    lines = ["| scope | what it allows | grant column | access ledger group |", "| --- | --- | --- | --- |"]
    for scope in Scope:
        group = scope.group
        recorded = f"`{group.name}` ({group.holds})" if group else "the record itself (`appointment`, `patient`)"
        lines.append(f"| `{scope.value}` | {scope.description} | `{scope.column}` | {recorded} |")
    return "\n".join(lines)
