"""Deterministic demo data: French practices, practitioners, patients, appointments and partners.

The same seed and reference date always give the same data (public ids included); only the
partners' API keys are random, since only their hashes are stored. Rows are written with
Core bulk inserts in chunks, with explicit primary keys, so the large size stays fast.
"""

from __future__ import annotations

import base64
import json
import random
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from faker import Faker
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import Engine, func, insert, select, text, update
from sqlalchemy.orm import Session

from api import operators
from api.ids import KIND_PREFIXES
from api.models import (
    Appointment,
    AppointmentStatus,
    ChangeCounter,
    Gender,
    Grant,
    Partner,
    PartnerStatus,
    Patient,
    Practice,
    PracticeMembership,
    Practitioner,
)
from api.scopes import Scope

CHUNK = 10_000


@dataclass(frozen=True)
class Size:
    practices: int
    practitioners: int
    patients: int
    appointments: int


SIZES = {
    "small": Size(practices=3, practitioners=10, patients=200, appointments=1_000),
    "medium": Size(practices=20, practitioners=150, patients=30_000, appointments=150_000),
    "large": Size(practices=100, practitioners=700, patients=200_000, appointments=1_000_000),
}

SPECIALTIES = [
    "médecin généraliste", "médecin généraliste", "médecin généraliste", "dentiste", "kinésithérapeute",
    "pédiatre", "dermatologue", "ophtalmologue", "gynécologue", "cardiologue", "psychiatre", "orthophoniste",
]
REASONS = [
    "Renouvellement d'ordonnance", "Douleur lombaire", "Consultation de suivi", "Certificat médical",
    "Vaccination", "Fièvre persistante", "Bilan annuel", "Contrôle tension artérielle", "Détartrage",
    "Rééducation du genou", "Suivi de grossesse", "Eczéma", "Baisse de la vision", "Toux depuis une semaine",
]
NOTES = ["Patient anxieux", "Prévoir 10 min de plus", "Rappeler pour résultats", "Allergie pénicilline"]
PRACTICE_KINDS = ["Cabinet médical", "Centre de santé", "Maison de santé", "Cabinet dentaire", "Centre médical"]
OVERSEAS = {"Fort-de-France": "America/Martinique", "Saint-Denis": "Indian/Reunion"}
DAYS_BACK, DAYS_AHEAD = 180, 60
SLOT_MINUTES, DAY_SLOTS, FIRST_HOUR = 30, 20, 8  # 08:00 to 18:00, half-hour slots

# Who connects to what in the demo: every kind of grant the API distinguishes.
PARTNERS: list[tuple[str, str]] = [
    ("Logimed", "practice-management software with every scope at most practices"),
    ("AgendaPlus", "online agenda: appointments and patient identity, no contact details"),
    ("TeleConsult+", "teleconsultation: reads, books, sees reasons, at one practice"),
    ("ArchivMed", "former partner whose grant expired"),
    ("RevokedSoft", "partner whose grant a practice revoked"),
    ("Newcomer", "registered partner connected to no practice yet"),
    ("Suspendu SA", "suspended partner: its key is refused"),
]


@dataclass
class SeedReport:
    size: str
    counts: dict[str, int]
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)


class SeedError(Exception):
    pass


def _public_id(rng: random.Random, kind: str) -> str:
    random_part = base64.b32encode(rng.getrandbits(128).to_bytes(16, "big")).decode().rstrip("=").lower()
    return f"{KIND_PREFIXES[kind]}_{random_part}"


def _ascii(text_: str) -> str:
    return unicodedata.normalize("NFKD", text_).encode("ascii", "ignore").decode().lower().replace(" ", "")


def _chunks(rows: Iterable[dict[str, Any]], size: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def seed(
    engine: Engine,
    size: str,
    seed: int = 2020,
    keys_file: Path | None = None,
    reference_date: date | None = None,
    progress: bool = True,
) -> SeedReport:
    """Fill an empty, migrated database. Raises SeedError when it already has practices."""
    if size not in SIZES:
        raise SeedError(f"unknown size {size!r}: choose among {', '.join(SIZES)}")
    spec = SIZES[size]
    reference = datetime.combine(reference_date or datetime.now(UTC).date(), time(), tzinfo=UTC)
    rng = random.Random(seed)
    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    with Session(engine) as session:
        if session.scalar(select(func.count()).select_from(Practice)):
            raise SeedError("the database already has practices: seed only an empty database")

    bar = Progress(
        TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not progress, transient=False,
    )
    with bar, engine.begin() as connection:
        def write(model: type, rows: Iterable[dict[str, Any]], total: int, label: str) -> None:
            task = bar.add_task(label, total=total)
            for chunk in _chunks(rows):
                connection.execute(insert(model), chunk)
                bar.advance(task, len(chunk))

        cities = [fake.city() for _ in range(spec.practices - len(OVERSEAS))] + list(OVERSEAS)
        practices = [
            {
                "id": i + 1, "public_id": _public_id(rng, "Practice"),
                "name": f"{rng.choice(PRACTICE_KINDS)} {city} {i + 1}",
                "address": f"{fake.street_address()}, {fake.postcode()} {city}",
                "timezone": OVERSEAS.get(city, "Europe/Paris"),
            }
            for i, city in enumerate(cities[: spec.practices])
        ]
        write(Practice, practices, len(practices), "practices")

        rpps = rng.sample(range(10_000_000_000, 10_999_999_999), spec.practitioners)
        practitioners = [
            {"id": i + 1, "first_name": fake.first_name(), "last_name": fake.last_name(),
             "specialty": rng.choice(SPECIALTIES), "rpps": str(rpps[i])}
            for i in range(spec.practitioners)
        ]
        write(Practitioner, practitioners, len(practitioners), "practitioners")

        # Every practice gets practitioners; a fifth of them also work at a second practice.
        works_at: dict[int, list[int]] = {}
        for p in practitioners:
            first = (p["id"] - 1) % spec.practices + 1
            places = [first]
            if rng.random() < 0.2 and spec.practices > 1:
                places.append(rng.choice([x for x in range(1, spec.practices + 1) if x != first]))
            works_at[p["id"]] = places
        memberships = [
            {"practice_id": practice, "practitioner_id": pid, "public_id": _public_id(rng, "Practitioner")}
            for pid, places in works_at.items()
            for practice in places
        ]
        write(PracticeMembership, memberships, len(memberships), "memberships")

        patients_of: dict[int, list[int]] = {p["id"]: [] for p in practices}

        def patient_rows() -> Iterator[dict[str, Any]]:
            for i in range(spec.patients):
                practice = i % spec.practices + 1
                patients_of[practice].append(i + 1)
                gender = rng.choice([Gender.FEMALE, Gender.MALE, Gender.FEMALE, Gender.MALE, Gender.OTHER])
                first = fake.first_name_female() if gender == Gender.FEMALE else fake.first_name_male()
                last = fake.last_name()
                yield {
                    "id": i + 1, "public_id": _public_id(rng, "Patient"), "practice_id": practice,
                    "first_name": first, "last_name": last, "gender": gender,
                    "birth_date": reference.date() - timedelta(days=rng.randrange(365, 95 * 365)),
                    "phone": f"+33 6 {rng.randrange(10**8):08d}",
                    "email": f"{_ascii(first)}.{_ascii(last)}{rng.randrange(100)}@{rng.choice(['orange.fr', 'free.fr', 'gmail.com', 'laposte.net'])}",
                    "created_at": reference - timedelta(days=rng.randrange(DAYS_BACK, 3000)),
                }

        write(Patient, patient_rows(), spec.patients, "patients")
        write(Appointment, _appointments(rng, spec, practices, works_at, patients_of, reference), spec.appointments, "appointments")
        connection.execute(update(ChangeCounter).where(ChangeCounter.id == 1).values(value=spec.appointments))
        if connection.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in ("practices", "practitioners", "patients", "appointments"):
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))

    report = SeedReport(size, {"practices": spec.practices, "practitioners": spec.practitioners,
                               "patients": spec.patients, "appointments": spec.appointments})
    report.keys = _partners(engine, practices)
    report.counts["partners"] = len(PARTNERS)
    if keys_file is not None:
        keys_file.write_text(json.dumps(report.keys, indent=2, ensure_ascii=False) + "\n")
    return report


def _appointments(
    rng: random.Random,
    spec: Size,
    practices: list[dict[str, Any]],
    works_at: dict[int, list[int]],
    patients_of: dict[int, list[int]],
    reference: datetime,
) -> Iterator[dict[str, Any]]:
    """Appointments on working days and hours, local to each practice; no practitioner is ever
    booked twice at once (each draws distinct slots)."""
    zones = {p["id"]: ZoneInfo(p["timezone"]) for p in practices}
    days = [
        reference.date() + timedelta(days=d)
        for d in range(-DAYS_BACK, DAYS_AHEAD)
        if (reference.date() + timedelta(days=d)).weekday() < 5
    ]
    slots = len(days) * DAY_SLOTS
    per_practitioner, extra = divmod(spec.appointments, spec.practitioners)
    if per_practitioner + 1 > slots:
        raise SeedError("more appointments than a practitioner's agenda holds")
    rows = []
    for practitioner, places in works_at.items():
        count = per_practitioner + (1 if practitioner <= extra else 0)
        for slot in rng.sample(range(slots), count):
            day, index = divmod(slot, DAY_SLOTS)
            practice = rng.choice(places)
            local = datetime.combine(days[day], time(FIRST_HOUR)) + timedelta(minutes=SLOT_MINUTES * index)
            starts = local.replace(tzinfo=zones[practice]).astimezone(UTC)
            rows.append((starts, practitioner, practice))
    rows.sort()
    for number, (starts, practitioner, practice) in enumerate(rows, start=1):
        past = starts < reference
        roll = rng.random()
        if past:
            status = AppointmentStatus.FULFILLED if roll < 0.85 else AppointmentStatus.NOSHOW if roll < 0.9 else AppointmentStatus.CANCELLED
        else:
            status = AppointmentStatus.BOOKED if roll < 0.9 else AppointmentStatus.CANCELLED
        created = starts - timedelta(days=rng.randrange(1, 45), minutes=rng.randrange(600))
        yield {
            "id": number, "public_id": _public_id(rng, "Appointment"), "practice_id": practice,
            "practitioner_id": practitioner, "patient_id": rng.choice(patients_of[practice]),
            "starts_at": starts, "ends_at": starts + timedelta(minutes=rng.choice([15, 20, 30])),
            "status": status, "reason": rng.choice(REASONS),
            "internal_note": rng.choice(NOTES) if rng.random() < 0.1 else None,
            "source_partner_id": None, "created_at": created,
            "updated_at": created if status != AppointmentStatus.CANCELLED else created + timedelta(hours=rng.randrange(1, 48)),
            "change_seq": number,
        }


def _partners(engine: Engine, practices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Partners, keys and grants. Grants run from today, whatever the data's reference date."""
    names = [p["name"] for p in practices]
    everything = set(Scope)
    plan: dict[str, list[tuple[str, set[Scope]]]] = {
        "Logimed": [(n, everything) for n in names[: max(1, len(names) * 2 // 3)]],
        "AgendaPlus": [(n, {Scope.APPOINTMENTS_READ, Scope.PATIENTS_IDENTITY}) for n in names[::2]],
        "TeleConsult+": [(names[0], {Scope.APPOINTMENTS_READ, Scope.APPOINTMENTS_WRITE, Scope.APPOINTMENTS_REASON, Scope.PATIENTS_IDENTITY})],
        "ArchivMed": [(names[-1], everything)],
        "RevokedSoft": [(names[-1], {Scope.APPOINTMENTS_READ, Scope.PATIENTS_IDENTITY})],
        "Newcomer": [],
        "Suspendu SA": [(names[0], everything)],
    }
    keys: dict[str, dict[str, Any]] = {}
    now = datetime.now(UTC)
    expiry = now + timedelta(days=365)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        for name, description in PARTNERS:
            operators.create_partner(session, name)
            token = operators.issue_partner_key(session, name, label="demo").token
            grants = [operators.grant_practice(session, name, practice, scopes, expiry) for practice, scopes in plan[name]]
            keys[name] = {"key": token, "description": description, "status": "active", "grants": grants}
        operators.revoke_grant(session, "RevokedSoft", names[-1])
        archived = session.scalar(select(Grant).join(Partner).where(Partner.name == "ArchivMed"))
        assert archived is not None
        archived.expires_at = now - timedelta(days=30)
        operators.set_partner_status(session, "Suspendu SA", PartnerStatus.SUSPENDED)
        keys["Suspendu SA"]["status"] = "suspended"
        session.flush()
        public_ids = {p["name"]: p["public_id"] for p in practices}
        for entry in keys.values():
            entry["grants"] = [
                {
                    "practice": g.practice.name, "practice_id": public_ids[g.practice.name],
                    "scopes": sorted(g.scopes), "expires_at": g.expires_at.isoformat(), "revoked": g.revoked_at is not None,
                }
                for g in entry["grants"]
            ]
    return keys
