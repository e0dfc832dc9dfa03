"""Reports over the access ledger, for a data-protection officer (GDPR art. 33/34).

What a partner was shown and when, who was shown a patient, and the extraction alerts: every
figure is aggregated in SQL from the ledger (`access_records`, `disclosures`), through its
indexes, so a report over millions of rows reads only the rows it reports on.

A patient is concerned by a disclosure of their own record and by one of their appointments
(its time, practitioner and reason are data about them, even when the patient field was not
selected): every appointment's row names its patient. The reports read only the ledger's own ids,
so a record the practice deleted or moved since is still reported as it was shown ("(deleted)" where
its public id is gone).

A ledger row names an appointment, a patient, or an appointment and its patient with the groups of
each (api/ledger/access.py `Disclosures.rows`): the reports give the same answers whether a response's
appointment and patient were written in one row or in two, as before that row shape.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, case, distinct, func, select
from sqlalchemy.orm import QueryableAttribute, Session

from api.data.models import (
    AccessRecord,
    AlertDelivery,
    Disclosure,
    ExtractionAlert,
    Partner,
    PartnerKey,
    Patient,
    Practice,
    TrustedDocument,
)
from api.ledger.access import DISCLOSED_GROUPS, FIELD_GROUPS, HISTORY, PATIENT_GROUPS, SCOPE_GROUPS
from api.operators.accounts import OperatorError, find_partner
from api.scopes import LedgerGroup


@dataclass(frozen=True)
class PracticeExposure:
    """What one practice's file lost to the partner: distinct records, and how many with each sensitive group."""

    practice_id: str
    practice: str
    patients: int
    appointments: int
    field_groups: int  # api.ledger.access.FIELD_GROUPS bits, all disclosures together
    # Per group of a scope (api.scopes), e.g. "identity": the patients (or, for "reason", the
    # appointments) disclosed with it. Shown as `with_identity`, `with_contact`... columns.
    with_groups: dict[str, int]


@dataclass(frozen=True)
class DocumentExposure:
    """What one operation of the partner disclosed: a registered document (by id), or the documents
    sent as text by its open keys (`document_id` None)."""

    document_id: str | None
    operation: str | None  # the registered document's operation name
    patients: int
    appointments: int
    requests: int
    field_groups: int


@dataclass(frozen=True)
class PatientExposure:
    patient_id: str
    practice_id: str
    practice: str
    field_groups: int
    appointments: int  # of theirs, disclosed
    requests: int
    first_disclosed: datetime
    last_disclosed: datetime
    first_name: str | None = None  # only when asked for: to notify, not to spread
    last_name: str | None = None


@dataclass(frozen=True)
class PartnerExposure:
    """`partner-api exposure --partner`: one partner (or one of its keys) over [since, until)."""

    partner: str
    key_prefix: str | None
    since: datetime
    until: datetime
    practices: list[PracticeExposure]
    patients: list[PatientExposure]
    documents: list[DocumentExposure]  # which operation read these patients
    document_id: str | None = None  # the report is about this document only
    days: list[DayExposure] = field(default_factory=list)  # only the days with a disclosure


@dataclass(frozen=True)
class DayExposure:
    """One day (the database's date of the request's time, UTC on PostgreSQL's default) of a partner's report."""

    day: date
    patients: int
    appointments: int
    requests: int


@dataclass(frozen=True)
class Reader:
    """One partner credential (an API key, an OAuth client) that read a patient."""

    partner: str | None  # None: the partner was deleted since
    key_prefix: str | None  # the API key, or the credential of the OAuth client
    client_id: str | None  # with an OAuth access token: its client
    field_groups: int
    appointments: int
    requests: int
    first_disclosed: datetime
    last_disclosed: datetime


@dataclass(frozen=True)
class PatientReaders:
    """`partner-api exposure --patient`: every partner that read one patient."""

    patient_id: str
    practice_id: str
    practice: str
    since: datetime | None
    until: datetime | None
    readers: list[Reader]


@dataclass(frozen=True)
class Alert:
    """An extraction alert, its evidence and the state of its delivery to the operators' webhook.

    `patients_in_window` is the distinct patients already read in the window (for churn: the
    bookings cancelled soon after booking), `threshold` the limit of that window (churn: the
    cancellations that alert), `fraction` the share of the limit a warning marks."""

    raised_at: datetime
    kind: str
    partner: str
    key_prefix: str | None
    practice_id: str
    practice: str
    window_hours: int
    patients_in_window: int
    patients_refused: int
    threshold: int
    fraction: float | None
    delivery: str  # delivered, pending, retrying
    delivery_attempts: int
    delivered_at: datetime | None
    last_error: str | None


DELETED = "(deleted)"  # in place of the public id or name of a record deleted since (JSON: null)


def _or_deleted(column: QueryableAttribute[str]) -> ColumnElement[str]:
    """A live record's public id or name; the ledger still names, and counts, a record deleted since."""
    return func.coalesce(column, DELETED)


def _has(groups: ColumnElement[int], group: LedgerGroup) -> ColumnElement[bool]:
    return groups.op("&")(group.bit) != 0


def _union_of(groups: ColumnElement[int]) -> ColumnElement[int]:
    """The OR of every row's bits, in portable SQL (SQLite has no bit_or): max(bit) summed per bit."""
    return functools.reduce(operator.add, [func.max(groups.op("&")(group.bit)) for group in FIELD_GROUPS])


# The groups the report counts apart: one per scope that has its own (api.scopes), in table order.
COUNTED_GROUPS = (*dict.fromkeys(SCOPE_GROUPS.values()), HISTORY)


def _in_period(
    since: datetime | None, until: datetime | None, at: QueryableAttribute[datetime] = AccessRecord.at
) -> list[ColumnElement[bool]]:
    return [*([at >= since] if since else []), *([at < until] if until else [])]


# A disclosure's `at` is its request's: joined on both, and bounded on both, each table reads only the
# months of the period on PostgreSQL, where both are partitioned by it (api/ledger/partitions.py).
_ITS_REQUEST = (AccessRecord.id == Disclosure.access_id) & (AccessRecord.at == Disclosure.at)

# What a row disclosed about its patient: of a patient alone, their groups; of an appointment, its
# groups and those of the patient's record sent with it.
_CONCERNING_THE_PATIENT = case((Disclosure.appointment_id.is_(None), PATIENT_GROUPS), else_=DISCLOSED_GROUPS)


def partner_exposure(
    session: Session,
    partner_name: str,
    since: datetime,
    until: datetime,
    key_prefix: str | None = None,
    with_names: bool = False,
    document_id: str | None = None,
) -> PartnerExposure:
    """What PARTNER (or only its key KEY_PREFIX, or only its document DOCUMENT_ID) was shown in
    [since, until): per practice, per document, then per patient."""
    partner = find_partner(session, partner_name)
    # The partner's range of its disclosures' own index: the requests are read only to narrow to a key or a
    # document, and for the breakdown by document.
    disclosed = (
        select(
            Disclosure.access_id,
            Disclosure.practice_id,
            Disclosure.appointment_id,
            DISCLOSED_GROUPS.label("field_groups"),
            Disclosure.field_groups.label("appointment_groups"),  # on a row naming an appointment
            _CONCERNING_THE_PATIENT.label("patient_groups"),
            Disclosure.at,
            Disclosure.patient_id,
        )
        .where(Disclosure.partner_id == partner.id, *_in_period(since, until, Disclosure.at))
    )
    requests: list[ColumnElement[bool]] = []  # which of the partner's requests, when not all
    if key_prefix is not None:
        key_id = session.scalar(
            select(PartnerKey.id).where(PartnerKey.prefix == key_prefix, PartnerKey.partner_id == partner.id)
        )
        if key_id is None:
            raise OperatorError(f"{partner.name} has no key with prefix {key_prefix!r}")
        requests.append(AccessRecord.key_id == key_id)
    if document_id is not None:
        requests.append(AccessRecord.document_id == document_id)
    # Each disclosure's document is its request's: read with the requests only where asked for.
    with_documents = (
        disclosed.add_columns(AccessRecord.document_id)
        .join(AccessRecord, _ITS_REQUEST)
        .where(*requests, *_in_period(since, until))
        .subquery("by_document")
    )
    if requests:
        disclosed = disclosed.join(AccessRecord, _ITS_REQUEST).where(*requests, *_in_period(since, until))
    shown = disclosed.subquery("shown")
    groups = shown.c.field_groups
    counted = {"patient": shown.c.patient_groups, "appointment": shown.c.appointment_groups}
    practice_id, practice_name = _or_deleted(Practice.public_id), _or_deleted(Practice.name)
    practices = session.execute(
        select(
            practice_id,
            practice_name,
            func.count(distinct(shown.c.patient_id)),
            func.count(distinct(shown.c.appointment_id)),
            _union_of(groups),
            *(
                func.count(distinct(case((_has(counted[g.counted_per], g), shown.c[f"{g.counted_per}_id"]))))
                for g in COUNTED_GROUPS
            ),
        )
        .select_from(shown)
        .outerjoin(Practice, Practice.id == shown.c.practice_id)
        .group_by(shown.c.practice_id, Practice.public_id, Practice.name)
        .order_by(practice_name, practice_id, shown.c.practice_id)
    )
    documents = session.execute(
        select(
            with_documents.c.document_id,
            TrustedDocument.operation_name,
            func.count(distinct(with_documents.c.patient_id)),
            func.count(distinct(with_documents.c.appointment_id)),
            func.count(distinct(with_documents.c.access_id)),
            _union_of(with_documents.c.field_groups),
        )
        .outerjoin(
            TrustedDocument,
            (TrustedDocument.partner_id == partner.id) & (TrustedDocument.document_id == with_documents.c.document_id),
        )
        .group_by(with_documents.c.document_id, TrustedDocument.operation_name)
        .order_by(TrustedDocument.operation_name, with_documents.c.document_id)
    )
    names: list[Any] = [Patient.first_name, Patient.last_name] if with_names else []
    patient_id = _or_deleted(Patient.public_id)
    patients = session.execute(
        select(
            patient_id,
            practice_id,
            practice_name,
            _union_of(shown.c.patient_groups),
            func.count(distinct(shown.c.appointment_id)),
            func.count(distinct(shown.c.access_id)),
            func.min(shown.c.at),
            func.max(shown.c.at),
            *names,
        )
        .select_from(shown)
        .where(shown.c.patient_id.is_not(None))
        .outerjoin(Patient, Patient.id == shown.c.patient_id)
        .outerjoin(Practice, Practice.id == shown.c.practice_id)
        .group_by(shown.c.patient_id, shown.c.practice_id, Patient.public_id, Practice.public_id, Practice.name, *names)
        .order_by(practice_name, practice_id, patient_id, shown.c.patient_id)
    )
    day = func.date(shown.c.at)
    days = session.execute(
        select(
            day,
            func.count(distinct(shown.c.patient_id)),
            func.count(distinct(shown.c.appointment_id)),
            func.count(distinct(shown.c.access_id)),
        )
        .group_by(day)
        .order_by(day)
    )
    return PartnerExposure(
        partner=partner.name,
        key_prefix=key_prefix,
        since=since,
        until=until,
        practices=[
            PracticeExposure(
                *row[:5], with_groups={g.name: count for g, count in zip(COUNTED_GROUPS, row[5:], strict=True)}
            )
            for row in practices
        ],
        patients=[PatientExposure(*row) for row in patients],
        documents=[DocumentExposure(*row) for row in documents],
        document_id=document_id,
        # SQLite's date() is text, PostgreSQL's a date.
        days=[DayExposure(d if isinstance(d, date) else date.fromisoformat(d), *counts) for d, *counts in days],
    )


def patient_readers(
    session: Session, patient_public_id: str, since: datetime | None = None, until: datetime | None = None
) -> PatientReaders:
    """Every partner key that was shown the patient (their record or one of their appointments), when, and what."""
    row = session.execute(
        select(Patient.id, Practice.public_id, Practice.name)
        .join(Practice, Practice.id == Patient.practice_id)
        .where(Patient.public_id == patient_public_id)
    ).one_or_none()
    if row is None:
        raise OperatorError(f"no patient with id {patient_public_id!r}")
    patient_id, practice_id, practice = row
    shown = (
        select(Disclosure.access_id, Disclosure.at, Disclosure.appointment_id)
        .add_columns(_CONCERNING_THE_PATIENT.label("field_groups"))
        .where(Disclosure.patient_id == patient_id, *_in_period(since, until, Disclosure.at))
        .subquery("shown")
    )
    first_at = func.min(AccessRecord.at)
    readers = session.execute(
        select(
            Partner.name,
            AccessRecord.key_prefix,
            AccessRecord.client_id,
            _union_of(shown.c.field_groups),
            func.count(distinct(shown.c.appointment_id)),
            func.count(distinct(shown.c.access_id)),
            first_at,
            func.max(AccessRecord.at),
        )
        .join(AccessRecord, (AccessRecord.id == shown.c.access_id) & (AccessRecord.at == shown.c.at))
        .outerjoin(Partner, Partner.id == AccessRecord.partner_id)
        .where(*_in_period(since, until))
        .group_by(AccessRecord.partner_id, Partner.name, AccessRecord.key_prefix, AccessRecord.client_id)
        .order_by(first_at, Partner.name, AccessRecord.key_prefix, AccessRecord.client_id)
    )
    return PatientReaders(
        patient_id=patient_public_id,
        practice_id=practice_id,
        practice=practice,
        since=since,
        until=until,
        readers=[Reader(*r) for r in readers],
    )


def alerts(session: Session, partner_name: str | None = None, since: datetime | None = None) -> list[Alert]:
    """The extraction alerts of every kind, oldest first, with the evidence recorded when each was
    raised and the state of its webhook delivery."""
    delivery = case(
        (AlertDelivery.delivered_at.is_not(None), "delivered"),
        (AlertDelivery.attempts > 0, "retrying"),
        else_="pending",
    )
    query = (
        select(
            ExtractionAlert.raised_at,
            ExtractionAlert.kind,
            Partner.name,
            PartnerKey.prefix,
            Practice.public_id,
            Practice.name,
            ExtractionAlert.window_hours,
            ExtractionAlert.patients_in_window,
            ExtractionAlert.patients_refused,
            ExtractionAlert.threshold,
            ExtractionAlert.fraction,
            delivery,
            func.coalesce(AlertDelivery.attempts, 0),
            AlertDelivery.delivered_at,
            AlertDelivery.last_error,
        )
        .join(Partner, Partner.id == ExtractionAlert.partner_id)
        .join(Practice, Practice.id == ExtractionAlert.practice_id)
        .outerjoin(PartnerKey, PartnerKey.id == ExtractionAlert.key_id)
        .outerjoin(AlertDelivery, AlertDelivery.alert_id == ExtractionAlert.id)
        .order_by(ExtractionAlert.raised_at, ExtractionAlert.id)
    )
    if partner_name is not None:
        query = query.where(ExtractionAlert.partner_id == find_partner(session, partner_name).id)
    if since is not None:
        query = query.where(ExtractionAlert.raised_at >= since)
    # A Row is no tuple to the type checker, so its unpacking is checked at run time (the columns above).
    rows: list[Any] = list(session.execute(query))
    return [Alert(*row) for row in rows]
