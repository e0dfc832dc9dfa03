"""The access ledger: every request, and every record a served request disclosed.

Records are registered while the response is built (api/ledger/disclosure_recorder.py), with
the field groups the response actually carried. The ledger is
written, and committed, before the response leaves: if it cannot be, the response is replaced
by an error and no data is sent (fail closed).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Integer, Table, bindparam, func, insert, select, text, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.models import AccessRecord, Base, Disclosure
from api.data.sqlite_driver import DEFERRED
from api.scopes import LedgerGroup, Scope


def _table(model: type[Base]) -> Table:
    # Declarative types `__table__` as any FromClause; these models are mapped to plain tables.
    table = model.__table__
    assert isinstance(table, Table)
    return table


# Written as tables, not ORM entities: no ORM bulk processing per row.
_ACCESS_RECORDS = _table(AccessRecord)
_DISCLOSURES = _table(Disclosure)
# Built once, executed with each request's values.
_RECORD = insert(_ACCESS_RECORDS)
# SQLite: a record, then its disclosures naming the last record written. Within the transaction that
# wrote it that is this one: SQLite has one writer, and a new row's id is the largest (a rowid).
_DISCLOSE_FOR_LAST = insert(_DISCLOSURES).values(access_id=select(func.max(_ACCESS_RECORDS.c.id)).scalar_subquery())

# The groups every disclosure of a record carries: the record itself (its times, status and
# practitioner; the patient's opaque id). Each scope then adds the group of its own row in the
# scope table, if it has one (`api.scopes`). The bits are stored in `disclosures.field_groups`.
APPOINTMENT = LedgerGroup("appointment", bit=1, counted_per="appointment", holds="times, status, practitioner")
PATIENT = LedgerGroup("patient", bit=4, counted_per="patient", holds="the patient's opaque id")
RECORD_GROUPS = (APPOINTMENT, PATIENT)
SCOPE_GROUPS: dict[Scope, LedgerGroup] = {scope: group for scope in Scope if (group := scope.group)}
# Not a scope's: the mark of purpose-bound fields read outside the reading horizon (authz/fields.polar).
HISTORY = LedgerGroup(
    "history", bit=32, counted_per="patient",
    holds="purpose-bound fields of a record outside the reading horizon, read through the grant's history permission",
)
FIELD_GROUPS: tuple[LedgerGroup, ...] = tuple(
    sorted({*RECORD_GROUPS, *SCOPE_GROUPS.values(), HISTORY}, key=lambda g: g.bit)
)

# The same bits as flags, named, for reading a stored value (`FieldGroup(row.field_groups)`).
FieldGroup = enum.IntFlag("FieldGroup", {group.name.upper(): group.bit for group in FIELD_GROUPS})  # type: ignore[misc]  # the functional API, with computed members


def group_names(mask: int) -> list[str]:
    """The names of the groups set in a stored `field_groups`, in bit order."""
    return [group.name for group in FIELD_GROUPS if mask & group.bit]


@dataclass
class Disclosures:
    """What one request's response carries, keyed by record.

    Written one row per disclosed appointment and one per disclosed patient not carried on one of
    them (`rows`): a patient shown with an appointment of theirs is named on that appointment's row,
    its groups in `patient_field_groups`, which halves the rows of a page of appointments with their
    patients. `of_rows` reads rows back into the records and groups they name.
    """

    appointments: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (practice, groups)
    patients: dict[int, tuple[int, int]] = field(default_factory=dict)
    patient_of: dict[int, int] = field(default_factory=dict)  # appointment id -> its patient's id

    def add(self, records: dict[int, tuple[int, int]], record_id: int, practice_id: int, groups: int) -> None:
        previous = records.get(record_id, (practice_id, 0))[1]
        records[record_id] = (practice_id, previous | groups)

    def carriers(self) -> dict[int, int]:
        """Disclosed patient -> the disclosed appointment whose row names it: the lowest id among the
        patient's own appointments of the same practice in the response (so that both executors, which
        register records in different orders, write the same rows). A patient without one is absent."""
        carriers: dict[int, int] = {}
        for appointment_id, patient_id in self.patient_of.items():
            patient, appointment = self.patients.get(patient_id), self.appointments.get(appointment_id)
            if patient is None or appointment is None or patient[0] != appointment[0]:
                continue
            chosen = carriers.get(patient_id)
            if chosen is None or appointment_id < chosen:
                carriers[patient_id] = appointment_id
        return carriers

    def rows(self) -> list[dict[str, int | None]]:
        """The `disclosures` rows, but for the access record's id. An appointment's row always names
        its patient, stored rather than looked up later (the practice may delete the appointment, or
        move it to another patient's file); `patient_field_groups` is 0 on it when the patient's record
        was not sent with it."""
        carriers = self.carriers()
        carried = {appointment_id: patient_id for patient_id, appointment_id in carriers.items()}
        rows: list[dict[str, int | None]] = []
        for i, (practice, groups) in self.appointments.items():
            patient_id = carried.get(i)
            rows.append(
                {
                    "practice_id": practice,
                    "appointment_id": i,
                    "patient_id": self.patient_of.get(i) if patient_id is None else patient_id,
                    "field_groups": groups,
                    "patient_field_groups": 0 if patient_id is None else self.patients[patient_id][1],
                }
            )
        for i, (practice, groups) in self.patients.items():
            if i not in carriers:
                rows.append(
                    {
                        "practice_id": practice,
                        "appointment_id": None,
                        "patient_id": i,
                        "field_groups": groups,
                        "patient_field_groups": None,
                    }
                )
        return rows

    @classmethod
    def of_rows(cls, rows: Iterable[Mapping[str, int | None]]) -> Disclosures:
        """The records and groups `rows` name (rows of either shape, of one request or several)."""
        named = cls()
        for row in rows:
            practice, appointment_id, patient_id = row["practice_id"], row["appointment_id"], row["patient_id"]
            groups, patient_groups = row["field_groups"], row.get("patient_field_groups")
            assert practice is not None and groups is not None  # NOT NULL columns
            if appointment_id is not None:
                named.add(named.appointments, appointment_id, practice, groups)
                if patient_id is not None:
                    named.patient_of[appointment_id] = patient_id
            if patient_id is not None and patient_groups != 0:  # as `PATIENT_GROUPS` below; 0: not sent
                named.add(named.patients, patient_id, practice, groups if patient_groups is None else patient_groups)
        return named


# Reading the rows in SQL. A row naming a patient alone discloses of them its own groups, with
# `patient_field_groups` NULL. A row naming an appointment names its patient too: the groups of the
# patient's record sent with it are in `patient_field_groups` (0: only the appointment, which
# concerns them, was sent; a record's groups hold at least its base group, never 0), and those of the
# appointment in `field_groups`. The ids are the ledger's own: deleting or moving a live record
# changes none of them (migration 3f9c2d7e1b58).
PATIENT_GROUPS: ColumnElement[int] = func.coalesce(Disclosure.patient_field_groups, Disclosure.field_groups)
# Every group a row disclosed, of its appointment and of its patient.
DISCLOSED_GROUPS: ColumnElement[int] = Disclosure.field_groups.op("|", return_type=Integer)(
    func.coalesce(Disclosure.patient_field_groups, 0)
)


@dataclass(frozen=True)
class AccessEntry:
    request_id: str
    at: datetime
    partner_id: int | None
    key_id: int | None
    key_prefix: str | None
    operation_name: str | None
    query: str | None
    outcome: str
    error_code: str | None
    http_status: int
    requested_cost: int | None
    actual_cost: int | None
    duration_ms: float
    client_address: str | None
    document_id: str | None = None  # the registered document the request named (sha256:<hex>)
    client_id: str | None = None  # the OAuth client of an access token (key_prefix: its credential's)
    token_jti: str | None = None


# What a client sends is recorded as far as the columns can hold it: a refusal of a hostile request
# must not fail on its own record (a NUL or 200-character name, a cost past 32 bits).
GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
MAX_NAME_LENGTH = 100
MAX_COST = 2**31 - 1


def storable_name(name: str | None) -> str | None:
    """The operation name as recorded: a GraphQL name, cut to the column, or nothing."""
    return name[:MAX_NAME_LENGTH] if name and GRAPHQL_NAME.fullmatch(name) else None


def document_hash(entry: AccessEntry) -> str | None:
    """The document's SHA-256: of the text as sent, lone surrogates included, or, for a registered
    document run by id, its id's (the hash of its text)."""
    if entry.query:
        return hashlib.sha256(entry.query.encode("utf-8", "surrogatepass")).hexdigest()
    return entry.document_id.removeprefix("sha256:") if entry.document_id else None


def _storable(entry: AccessEntry) -> dict[str, object]:
    values = {k: v for k, v in entry.__dict__.items() if k != "query"}
    values["operation_name"] = storable_name(entry.operation_name)
    for column in ("requested_cost", "actual_cost"):
        cost = values[column]
        values[column] = None if cost is None else max(-MAX_COST, min(MAX_COST, int(cost)))
    values["document_hash"] = document_hash(entry)
    return values


def write_refusals(connection: Connection, entries: Iterable[AccessEntry]) -> None:
    """Requests refused without disclosing anything, written by a process without an event loop (the
    process manager recording what a replaced worker was serving), in the caller's transaction."""
    rows = [_storable(entry) for entry in entries]
    if rows:
        connection.execute(insert(_ACCESS_RECORDS), rows)


async def write(session: AsyncSession, entry: AccessEntry, disclosures: Disclosures | None) -> None:
    """The request and what it disclosed, in the caller's transaction. Raises when it cannot be written
    (on SQLite, by the transaction's next statement or its commit: they are sent with it)."""
    values = _storable(entry)
    rows = disclosures.rows() if disclosures else []
    if session.get_bind().dialect.name == "sqlite":
        # Nothing read back: both statements go with the transaction's last (api/data/sqlite_driver.py),
        # so that the ledger's transaction holds SQLite's writer for one trip to its thread.
        await session.execute(_RECORD, values, execution_options=DEFERRED)
        if rows:
            request = {"at": entry.at, "partner_id": entry.partner_id}
            await session.execute(_DISCLOSE_FOR_LAST, [{**request, **row} for row in rows], execution_options=DEFERRED)
        return
    if rows:
        await session.execute(_ACCESS_WITH_DISCLOSURES, {**values, **_columns(rows)})  # one round trip
        return
    await session.execute(_RECORD, values)


# PostgreSQL plans every statement anew on the app's connections (`plan_cache_mode =
# force_custom_plan`, api/data/database.py: a read's cached generic plan can walk a whole practice),
# and so every query its foreign keys run: the ledger's statement checks each disclosure row's four
# (its RI triggers, two thirds of its execution), which took half its time planned anew (3.4 ms
# against 1.7 ms when a page wrote 100 disclosure rows). Its transaction lets PostgreSQL cache them.
_CACHED_PLANS = text("SET LOCAL plan_cache_mode = auto")


async def write_many(session: AsyncSession, requests: list[tuple[AccessEntry, Disclosures | None]]) -> None:
    """Several requests and what each disclosed, in the caller's transaction (api/ledger/group_commit.py).
    Raises as `write`.

    PostgreSQL: each request's one statement, prepared once per connection. A multi-row INSERT of the
    batch's disclosures (thousands of values, its text new for every batch size) made the batch slower
    than a transaction per request (bench/group_commit.py: 0.66x). SQLite: each request's two
    statements, all sent with the transaction's last."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql and any(d is not None and (d.appointments or d.patients) for _, d in requests):
        await session.execute(_CACHED_PLANS)  # for the statement with disclosures (a refusal has none)
    for entry, disclosures in requests:
        await write(session, entry, disclosures)


# PostgreSQL: the access record and its disclosures in one statement (a data-modifying CTE, the
# disclosures as arrays unnested): the ledger is the largest part of a request's overhead.
_DISCLOSED = ("practice_id", "appointment_id", "patient_id", "field_groups", "patient_field_groups")
_ACCESS = (
    insert(_ACCESS_RECORDS)
    .values(
        {
            column.name: bindparam(column.name, type_=column.type)
            for column in AccessRecord.__table__.c
            if column.name != "id"
        }
    )
    .returning(AccessRecord.id, AccessRecord.at, AccessRecord.partner_id)
    .cte("access")
)
_SHOWN = (
    func.unnest(*(bindparam(name, type_=ARRAY(Disclosure.__table__.c[name].type)) for name in _DISCLOSED))
    .table_valued(*_DISCLOSED)
    .render_derived("shown")
)
_ACCESS_WITH_DISCLOSURES = (
    insert(_DISCLOSURES)
    .from_select(
        ["access_id", "at", "partner_id", *_DISCLOSED],
        select(_ACCESS.c.id, _ACCESS.c.at, _ACCESS.c.partner_id, *(_SHOWN.c[name] for name in _DISCLOSED)).select_from(
            _ACCESS.join(_SHOWN, true())
        ),
    )
    .add_cte(_ACCESS)
)


def _columns(rows: list[dict[str, int | None]]) -> dict[str, list[int | None]]:
    return {name: [row[name] for row in rows] for name in _DISCLOSED}
