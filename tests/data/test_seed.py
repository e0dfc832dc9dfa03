"""The demo data: deterministic, realistic, consistent, with every kind of partner the API distinguishes."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from api.data.database import make_sync_engine
from api.data.migrate import upgrade
from api.data.models import (
    Appointment,
    AppointmentStatus,
    Base,
    ChangeCounter,
    Grant,
    Partner,
    PartnerKey,
    PartnerStatus,
    Patient,
    Practice,
    PracticeMembership,
    Practitioner,
)
from api.data.seed import DAYS_AFTER, DAYS_BEFORE, SIZES, SeedError, SeedReport, reference_date_for, seed
from api.identity.keys import secret_matches, split_token
from api.ids import kind_of
from api.operators.cli import app
from api.scopes import Scope
from api.settings import get_settings

SMALL = SIZES["small"]
DETERMINISTIC_TABLES = (
    "practices",
    "practitioners",
    "practice_memberships",
    "patients",
    "appointments",
    "partners",
    "grants",
)


@dataclass
class Seeded:
    engine: Engine
    report: SeedReport
    keys_file: Path

    @property
    def reference(self) -> datetime:
        return datetime.combine(self.report.reference_date, time(), tzinfo=ZoneInfo("UTC"))


@pytest.fixture
def seeded(sync_engine: Engine, tmp_path: Path) -> Seeded:
    keys_file = tmp_path / "keys.json"
    return Seeded(sync_engine, seed(sync_engine, "small", keys_file=keys_file, progress=False), keys_file)


def fresh_sqlite(path: Path) -> Engine:
    engine = make_sync_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def digest(engine: Engine) -> str:
    """Every seeded row except the random API keys, as the column types read them back."""
    content = hashlib.sha256()
    with engine.connect() as connection:
        for name in DETERMINISTIC_TABLES:
            table = Base.metadata.tables[name]
            for row in connection.execute(select(table).order_by(*table.primary_key.columns)):
                content.update(repr(tuple(row)).encode())
    return content.hexdigest()


def test_small_seed_fills_an_empty_database_to_its_declared_size(seeded):
    with Session(seeded.engine) as session:
        count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
        assert (count(Practice), count(Practitioner), count(Patient)) == (
            SMALL.practices,
            SMALL.practitioners,
            SMALL.patients,
        )
        appointments = count(Appointment)
    assert 0.9 * SMALL.appointments <= appointments <= 1.1 * SMALL.appointments
    assert seeded.report.counts["appointments"] == appointments


def test_the_same_seed_gives_the_same_data_on_any_database(sync_engine, tmp_path):
    seed(sync_engine, "small", seed=7, progress=False)
    again = fresh_sqlite(tmp_path / "again.db")
    seed(again, "small", seed=7, progress=False)
    other = fresh_sqlite(tmp_path / "other.db")
    seed(other, "small", seed=8, progress=False)
    assert digest(sync_engine) == digest(again)
    assert digest(other) != digest(again)
    for engine in (again, other):
        engine.dispose()


def test_the_reference_day_comes_from_the_seed_not_from_today(seeded):
    assert seeded.report.reference_date == reference_date_for(2020)
    assert reference_date_for(2020) == reference_date_for(2020) != reference_date_for(2021)


def test_no_practitioner_is_ever_booked_twice_at_once(seeded):
    with seeded.engine.connect() as connection:
        overlaps = connection.scalar(
            text(
                "SELECT count(*) FROM appointments a JOIN appointments b ON a.practitioner_id = b.practitioner_id "
                "AND a.id < b.id AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at"
            )
        )
    assert overlaps == 0


def test_patients_come_several_times_and_only_to_their_own_practice(seeded):
    with Session(seeded.engine) as session:
        elsewhere = session.scalar(
            select(func.count())
            .select_from(Appointment)
            .join(Patient, Patient.id == Appointment.patient_id)
            .where(Patient.practice_id != Appointment.practice_id)
        )
        visits = dict(
            session.execute(select(Appointment.patient_id, func.count()).group_by(Appointment.patient_id)).all()
        )
        patients = session.scalars(select(Patient.id)).all()
        memberships = set(
            session.execute(select(PracticeMembership.practice_id, PracticeMembership.practitioner_id)).all()
        )
        seen_by = set(session.execute(select(Appointment.practice_id, Appointment.practitioner_id).distinct()).all())
    assert elsewhere == 0
    assert all(visits.get(patient, 0) >= 2 for patient in patients)
    assert seen_by <= memberships


def test_practitioners_work_at_one_or_two_practices_with_unique_rpps(seeded):
    with Session(seeded.engine) as session:
        practices_of = Counter(session.scalars(select(PracticeMembership.practitioner_id)))
        rpps = session.scalars(select(Practitioner.rpps)).all()
    assert set(practices_of.values()) <= {1, 2} and len(practices_of) == SMALL.practitioners
    assert all(re.fullmatch(r"\d{11}", number) for number in rpps) and len(set(rpps)) == len(rpps)


def test_appointments_fall_in_working_hours_of_the_practice_time_zone(seeded):
    with Session(seeded.engine) as session:
        zones = {p.id: ZoneInfo(p.timezone) for p in session.scalars(select(Practice))}
        rows = session.execute(select(Appointment.practice_id, Appointment.starts_at, Appointment.ends_at)).all()
    assert {"Europe/Paris", "America/Martinique"} <= {zone.key for zone in zones.values()}
    first = seeded.reference - timedelta(days=DAYS_BEFORE)
    last = seeded.reference + timedelta(days=DAYS_AFTER)
    for practice_id, starts_at, ends_at in rows:
        local_start, local_end = starts_at.astimezone(zones[practice_id]), ends_at.astimezone(zones[practice_id])
        assert first <= starts_at < last
        assert timedelta(minutes=15) <= ends_at - starts_at <= timedelta(minutes=30)
        assert local_start.weekday() < 5 or (local_start.weekday() == 5 and local_end.time() <= time(12))
        assert time(8) <= local_start.time() and local_end.time() <= time(19)
        assert local_start.date() not in {date(2026, 7, 14), date(2026, 11, 11), date(2026, 12, 25)}


def test_past_appointments_are_done_and_future_ones_booked_or_cancelled(seeded):
    with Session(seeded.engine) as session:
        appointments = session.scalars(select(Appointment)).all()
    past = Counter(a.status for a in appointments if a.starts_at < seeded.reference)
    future = Counter(a.status for a in appointments if a.starts_at >= seeded.reference)
    assert set(past) == {AppointmentStatus.FULFILLED, AppointmentStatus.NOSHOW, AppointmentStatus.CANCELLED}
    assert set(future) == {AppointmentStatus.BOOKED, AppointmentStatus.CANCELLED}
    assert past[AppointmentStatus.FULFILLED] > 0.7 * sum(past.values())
    for a in appointments:
        assert a.created_at < a.starts_at and a.created_at <= a.updated_at <= max(seeded.reference, a.created_at)
    assert any(a.reason for a in appointments) and any(a.internal_note for a in appointments)


def test_change_seq_strictly_increases_and_the_counter_holds_the_last(seeded):
    with Session(seeded.engine) as session:
        seqs = session.scalars(select(Appointment.change_seq).order_by(Appointment.id)).all()
        counter = session.scalar(select(ChangeCounter.value).where(ChangeCounter.id == 1))
    assert seqs == list(range(1, len(seqs) + 1))
    assert counter == seqs[-1]


def test_public_ids_have_the_api_format(seeded):
    with Session(seeded.engine) as session:
        for model, kind in (
            (Practice, "Practice"),
            (PracticeMembership, "Practitioner"),
            (Patient, "Patient"),
            (Appointment, "Appointment"),
            (Grant, "Grant"),
            (Partner, "Partner"),
        ):
            assert {kind_of(public_id) for public_id in session.scalars(select(model.public_id))} == {kind}


def test_every_kind_of_partner_exists(seeded):
    reference = seeded.reference
    with Session(seeded.engine) as session:
        partners = {p.name: p for p in session.scalars(select(Partner))}
        keys = Counter(session.scalars(select(PartnerKey.partner_id)))
        grants = {
            name: session.scalars(select(Grant).where(Grant.partner_id == p.id)).all() for name, p in partners.items()
        }
    live = {
        name: [g for g in found if g.revoked_at is None and g.expires_at > reference] for name, found in grants.items()
    }
    everything, no_contact = frozenset(Scope), frozenset({Scope.APPOINTMENTS_READ, Scope.PATIENTS_IDENTITY})
    teleconsultation = frozenset({Scope.APPOINTMENTS_READ, Scope.APPOINTMENTS_WRITE, Scope.APPOINTMENTS_REASON})
    active = {name for name, p in partners.items() if p.status == PartnerStatus.ACTIVE}
    assert all(keys[p.id] == 1 for p in partners.values())
    assert any(
        name in active and len([g for g in found if g.scopes == everything]) >= 2 for name, found in live.items()
    )
    assert any(name in active and found and all(g.scopes == no_contact for g in found) for name, found in live.items())
    assert any(name in active and [g.scopes for g in found] == [teleconsultation] for name, found in live.items())
    assert any(found and all(g.expires_at < reference for g in found) for found in grants.values())
    assert any(found and all(g.revoked_at is not None for g in found) for found in grants.values())
    assert any(not found for found in grants.values())
    assert any(p.status == PartnerStatus.SUSPENDED and live[name] for name, p in partners.items())


def test_each_demo_grant_reads_patients_within_its_profiles_horizon(seeded):
    from api.data.seed import DEMO_PARTNERS

    wanted = {demo.name: {(g.horizon.days_back, g.horizon.days_ahead) for g in demo.grants} for demo in DEMO_PARTNERS}
    with Session(seeded.engine) as session:
        found = {
            name: {
                (g.days_back, g.days_ahead)
                for g in session.scalars(select(Grant).join(Partner).where(Partner.name == name))
            }
            for name in wanted
        }
    assert found == wanted
    assert found["RappelSMS"] == {(1, 7)}  # reminders: the coming week, not the practice's history
    assert max(ahead for horizons in found.values() for _, ahead in horizons) <= 90


def test_the_keys_file_names_every_partner_and_its_keys_verify(seeded):
    keys = json.loads(seeded.keys_file.read_text())
    with Session(seeded.engine) as session:
        hashes = {k.prefix: (k.secret_hash, k.partner.name) for k in session.scalars(select(PartnerKey))}
        practices = {p.public_id: p.name for p in session.scalars(select(Practice))}
        statuses = {p.name: p.status.value for p in session.scalars(select(Partner))}
        grants = session.scalar(select(func.count()).select_from(Grant))
    assert set(keys) == set(statuses)
    assert sum(len(entry["grants"]) for entry in keys.values()) == grants
    for name, entry in keys.items():
        parts = split_token(entry["key"])
        assert parts is not None
        secret_hash, owner = hashes[parts[0]]
        assert secret_matches(parts[1], secret_hash) and owner == name
        assert entry["status"] == statuses[name]
        for grant in entry["grants"]:
            assert practices[grant["practice_id"]] == grant["practice"]
            assert {Scope(scope) for scope in grant["scopes"]}
            assert datetime.fromisoformat(grant["expires_at"]).tzinfo is not None
            assert isinstance(grant["revoked"], bool)
            assert grant["days_back"] >= 0 and grant["days_ahead"] >= 0


def test_a_database_that_has_practices_is_refused(seeded):
    with pytest.raises(SeedError, match="already has 3 practices"):
        seed(seeded.engine, "small", progress=False)
    with Session(seeded.engine) as session:
        assert session.scalar(select(func.count()).select_from(Practice)) == SMALL.practices


def test_an_unknown_size_is_refused(sync_engine):
    with pytest.raises(SeedError, match="small, medium, large"):
        seed(sync_engine, "huge", progress=False)


def test_seed_command_migrates_and_seeds_then_refuses_a_second_time(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTNER_API_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        keys_file = tmp_path / "keys.json"
        first = runner.invoke(app, ["seed", "--size", "small", "--seed", "3", "--keys-file", str(keys_file)])
        assert first.exit_code == 0, first.output
        assert "200 patients" in first.output and "Logimed" in json.loads(keys_file.read_text())
        second = runner.invoke(app, ["seed", "--size", "small", "--keys-file", str(keys_file)])
        assert second.exit_code == 1 and "already has" in second.output
    finally:
        get_settings.cache_clear()
