"""The demo data: deterministic, realistic, consistent, with every kind of partner."""

import hashlib
import json
from datetime import date

import pytest

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from api.keys import secret_matches, split_token
from api.models import Appointment, AppointmentStatus, Partner, PartnerKey, Patient, PracticeMembership
from api.database import make_sync_engine
from api.migrate import upgrade
from api.seed import SIZES, SeedError, seed

DAY = date(2026, 11, 2)


def digest(engine) -> str:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT public_id, practice_id, starts_at, status, reason FROM appointments ORDER BY id")
        ).all()
        rows += connection.execute(text("SELECT public_id, first_name, last_name, email FROM patients ORDER BY id")).all()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_small_seed_is_consistent_and_complete(sync_engine, tmp_path):
    keys_file = tmp_path / "keys.json"
    report = seed(sync_engine, "small", keys_file=keys_file, reference_date=DAY, progress=False)
    assert report.counts["appointments"] == SIZES["small"].appointments
    with Session(sync_engine) as session:
        assert session.scalar(select(func.count()).select_from(Appointment)) == SIZES["small"].appointments
        # Each patient's appointments are at its own practice, with a practitioner who works there.
        mismatched = session.scalar(
            select(func.count()).select_from(Appointment).join(Patient, Patient.id == Appointment.patient_id)
            .where(Patient.practice_id != Appointment.practice_id)
        )
        assert mismatched == 0
        memberships = set(session.execute(select(PracticeMembership.practice_id, PracticeMembership.practitioner_id)).all())
        assert all(
            (a.practice_id, a.practitioner_id) in memberships for a in session.scalars(select(Appointment))
        )
        # No practitioner is booked twice at the same time.
        overlaps = session.scalar(text(
            "SELECT count(*) FROM appointments a JOIN appointments b ON a.practitioner_id = b.practitioner_id "
            "AND a.id < b.id AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at"
        ))
        assert overlaps == 0
        statuses = set(session.scalars(select(Appointment.status)))
        assert {AppointmentStatus.FULFILLED, AppointmentStatus.BOOKED, AppointmentStatus.CANCELLED} <= statuses
        stored = {k.prefix: k.secret_hash for k in session.scalars(select(PartnerKey))}
        partners = {p.name: p for p in session.scalars(select(Partner))}
    keys = json.loads(keys_file.read_text())
    assert set(keys) == set(partners)
    for entry in keys.values():
        prefix, secret = split_token(entry["key"])
        assert secret_matches(secret, stored[prefix])
    assert keys["Newcomer"]["grants"] == []
    assert keys["Suspendu SA"]["status"] == "suspended"
    assert any(g["revoked"] for g in keys["RevokedSoft"]["grants"])
    assert "patients:contact" not in keys["AgendaPlus"]["grants"][0]["scopes"]


def test_same_seed_same_data(tmp_path):
    digests = []
    for name in ("one", "two"):
        engine = make_sync_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade(engine)
        seed(engine, "small", seed=7, reference_date=DAY, progress=False)
        digests.append(digest(engine))
        engine.dispose()
    assert digests[0] == digests[1]


def test_seeding_a_filled_database_is_refused(sync_engine):
    seed(sync_engine, "small", reference_date=DAY, progress=False)
    with pytest.raises(SeedError):
        seed(sync_engine, "small", reference_date=DAY, progress=False)
