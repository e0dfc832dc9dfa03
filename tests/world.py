"""A small, fully known world for API tests: practices, people, partners with every kind of grant."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.data.models import (
    Appointment,
    AppointmentStatus,
    ChangeCounter,
    Gender,
    Grant,
    KeyMode,
    PartnerStatus,
    Patient,
    Practice,
    PracticeMembership,
    Practitioner,
)
from api.operators import accounts as operators
from api.scopes import Scope
from api.timeutil import utcnow

ALL_SCOPES = set(Scope)
READ_IDENTITY = {Scope.APPOINTMENTS_READ, Scope.PATIENTS_IDENTITY}

# A Monday at 08:00 UTC, two weeks ahead: appointments are future ones.
DAY = (utcnow() + timedelta(days=14)).replace(hour=8, minute=0, second=0, microsecond=0)
WINDOW = (DAY - timedelta(days=1), DAY + timedelta(days=2))


@dataclass
class World:
    keys: dict[str, str] = field(default_factory=dict)  # partner name -> bearer token
    practices: dict[str, Practice] = field(default_factory=dict)
    appointments: dict[str, list[str]] = field(default_factory=dict)  # practice name -> public ids
    patients: dict[str, list[str]] = field(default_factory=dict)
    practitioners: dict[str, list[str]] = field(default_factory=dict)  # membership public ids

    def practice_id(self, name: str) -> str:
        return self.practices[name].public_id


def build_world(engine: Engine, appointments_per_practice: int = 6) -> World:
    world = World()
    with Session(engine, expire_on_commit=False) as session:
        seq = 0
        practices = {
            name: Practice(name=name, address=f"1 rue {name}, Paris", timezone="Europe/Paris") for name in "ABC"
        }
        session.add_all(practices.values())
        doctors = [
            Practitioner(first_name="Claire", last_name="Martin", specialty="médecin généraliste", rpps="10000000001"),
            Practitioner(first_name="Hugo", last_name="Bernard", specialty="dentiste", rpps="10000000002"),
        ]
        session.add_all(doctors)
        session.flush()
        memberships = {
            "A": PracticeMembership(practice_id=practices["A"].id, practitioner_id=doctors[0].id),
            "B": PracticeMembership(practice_id=practices["B"].id, practitioner_id=doctors[0].id),
            "C": PracticeMembership(practice_id=practices["C"].id, practitioner_id=doctors[1].id),
        }
        session.add_all(memberships.values())
        for name, practice in practices.items():
            patients = [
                Patient(
                    practice_id=practice.id,
                    first_name=f"Prénom{name}{i}",
                    last_name=f"Nom{name}{i}",
                    gender=Gender.FEMALE,
                    birth_date=date(1980, 1, 1 + i),
                    phone=f"+3361234{name}{i:03d}",
                    email=f"patient{name}{i}@example.fr",
                )
                for i in range(3)
            ]
            session.add_all(patients)
            session.flush()
            world.patients[name] = [p.public_id for p in patients]
            world.practitioners[name] = [memberships[name].public_id]
            world.practices[name] = practice
            world.appointments[name] = []
            for i in range(appointments_per_practice):
                seq += 1
                starts = DAY + timedelta(minutes=30 * i)
                appointment = Appointment(
                    practice_id=practice.id,
                    practitioner_id=memberships[name].practitioner_id,
                    patient_id=patients[i % 3].id,
                    starts_at=starts,
                    ends_at=starts + timedelta(minutes=20),
                    status=AppointmentStatus.BOOKED,
                    reason=f"Motif secret {name}{i}",
                    internal_note=f"Note interne {name}{i}",
                    change_seq=seq,
                )
                session.add(appointment)
                session.flush()
                world.appointments[name].append(appointment.public_id)
        session.get(ChangeCounter, 1).value = seq  # type: ignore[union-attr]

        grants = {
            "full": [("A", ALL_SCOPES)],
            "no-contact": [("A", READ_IDENTITY)],
            "reader": [("A", {Scope.APPOINTMENTS_READ})],
            "other": [("B", ALL_SCOPES)],
            "expired": [("A", ALL_SCOPES)],
            "revoked": [("A", ALL_SCOPES)],
            "unconnected": [],
            "suspended": [("A", ALL_SCOPES)],
            "writer-only": [("A", {Scope.APPOINTMENTS_WRITE})],
        }
        for partner, practice_grants in grants.items():
            operators.create_partner(session, partner)
            # Open keys: these tests send their documents as text (tests/documents/ test trusted keys).
            world.keys[partner] = operators.issue_partner_key(session, partner, mode=KeyMode.OPEN).token
            for practice, scopes in practice_grants:
                operators.grant_practice(session, partner, practice, scopes)
        operators.revoke_grant(session, "revoked", "A")
        expired = operators.live_grant(session, operators.find_partner(session, "expired"), practices["A"])
        assert isinstance(expired, Grant)
        expired.expires_at = utcnow() - timedelta(minutes=1)
        operators.set_partner_status(session, "suspended", PartnerStatus.SUSPENDED)
        session.commit()
    return world


def window_args() -> dict[str, str]:
    return {"from": WINDOW[0].isoformat(), "to": WINDOW[1].isoformat()}
