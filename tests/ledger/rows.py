"""The ledger's disclosures read back as the records and groups they name, whatever the rows' shape
(a row per record, or an appointment and its patient in one: api/ledger/access.py `Disclosures.rows`)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from api.data.models import Appointment, Disclosure, Patient
from api.ledger.access import Disclosures, FieldGroup

DISCLOSURES = Disclosure.__table__


def disclosed(session: Session, *where: ColumnElement[bool]) -> Disclosures:
    """The records the rows matching `where` name, with their groups (united over the rows)."""
    return Disclosures.of_rows(session.execute(select(DISCLOSURES).where(*where).order_by(Disclosure.id)).mappings())


def by_public_id(session: Session, *where: ColumnElement[bool]) -> dict[str, FieldGroup]:
    """The same, keyed by the records' public ids (apt_..., pat_...)."""
    named = disclosed(session, *where)
    appointments = {
        i: public_id
        for i, public_id in session.execute(
            select(Appointment.id, Appointment.public_id).where(Appointment.id.in_(named.appointments))
        )
    }
    patients = {
        i: public_id
        for i, public_id in session.execute(select(Patient.id, Patient.public_id).where(Patient.id.in_(named.patients)))
    }
    return {appointments[i]: FieldGroup(groups) for i, (_, groups) in named.appointments.items()} | {
        patients[i]: FieldGroup(groups) for i, (_, groups) in named.patients.items()
    }


def groups_per_record(session: Session, *where: ColumnElement[bool]) -> set[int]:
    """Each row's groups of each record it carries (not united across rows; an appointment's row names
    its patient with 0 when it did not carry their record)."""
    rows = session.execute(select(Disclosure.field_groups, Disclosure.patient_field_groups).where(*where))
    return {groups for row in rows for groups in row if groups}
