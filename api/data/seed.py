"""Deterministic demo data: French practices, practitioners, patients, appointments and partners.

`seed(engine, size, seed)` fills an empty, migrated database. The same seed gives the same rows,
public ids included, on SQLite and PostgreSQL alike: every value comes from seeded generators and
the timeline is centred on a reference day fixed by the seed, never on today. Only the partners'
API keys are random (only their hashes are stored); the keys file hands them to the demo.

Rows are written with Core bulk inserts and explicit primary keys, one transaction per chunk, so
that the large size (a million appointments) seeds in minutes.
"""

from __future__ import annotations

import base64
import bisect
import enum
import itertools
import json
import random
import time as clock
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.easter import easter
from faker import Faker
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy.orm import Session

from api import reading_horizon
from api.data.models import (
    Appointment,
    AppointmentStatus,
    Base,
    ChangeCounter,
    Gender,
    Grant,
    KeyMode,
    Partner,
    PartnerKey,
    PartnerStatus,
    Patient,
    Practice,
    PracticeMembership,
    Practitioner,
)
from api.identity.keys import issue_key
from api.ids import KIND_PREFIXES
from api.reading_horizon import ReadingHorizon
from api.scopes import Scope

CHUNK_ROWS = 5_000
DAYS_BEFORE, DAYS_AFTER = 182, 61  # the agenda runs from six months back to two months ahead
FIRST_REFERENCE_DAY = date(2026, 11, 1)  # the seed picks the reference day among the 28 from here
GRANT_DURATION = timedelta(days=365)


@dataclass(frozen=True)
class SeedSize:
    name: str
    practices: int
    practitioners: int
    patients: int  # exact
    appointments: int  # a target: the agendas decide the exact count, within a few percent


SIZES: dict[str, SeedSize] = {
    size.name: size
    for size in (
        SeedSize("small", practices=3, practitioners=10, patients=200, appointments=1_000),
        SeedSize("medium", practices=20, practitioners=150, patients=30_000, appointments=150_000),
        SeedSize("large", practices=150, practitioners=1_000, patients=210_000, appointments=1_100_000),
    )
}


@dataclass(frozen=True)
class Specialty:
    name: str
    weight: int  # share of practitioners
    minutes: tuple[int, ...]  # a practitioner keeps one of these slot lengths
    reasons: tuple[str, ...]
    children: bool = False  # sees children only


SPECIALTIES = (
    Specialty("médecin généraliste", 40, (15, 20), (
        "Renouvellement d'ordonnance", "Douleur lombaire", "Fièvre et courbatures", "Toux persistante",
        "Certificat médical de sport", "Suivi hypertension", "Suivi diabète", "Vaccination antigrippale",
        "Angine", "Gastro-entérite", "Arrêt de travail", "Résultats de prise de sang",
    )),
    Specialty("dentiste", 12, (30,), (
        "Détartrage", "Douleur dentaire", "Carie", "Contrôle annuel", "Pose de couronne", "Dent de sagesse",
    )),
    Specialty("kinésithérapeute", 14, (30,), (
        "Rééducation du genou", "Lombalgie", "Entorse de la cheville", "Rééducation de l'épaule",
        "Cervicalgie", "Rééducation post-opératoire",
    )),
    Specialty("pédiatre", 8, (20, 30), (
        "Vaccins du nourrisson", "Suivi de croissance", "Otite", "Bronchiolite", "Fièvre",
        "Examen du 9e mois", "Certificat d'aptitude au sport",
    ), children=True),
    Specialty("dermatologue", 6, (15, 20), (
        "Contrôle des grains de beauté", "Acné", "Eczéma", "Psoriasis", "Verrue", "Chute de cheveux",
    )),
    Specialty("ophtalmologue", 6, (15, 20), (
        "Baisse de la vision", "Renouvellement de lunettes", "Fond d'œil", "Conjonctivite", "Suivi glaucome",
    )),
    Specialty("cardiologue", 5, (30,), (
        "Bilan cardiologique", "Palpitations", "Suivi hypertension", "Essoufflement à l'effort",
        "Électrocardiogramme",
    )),
    Specialty("rhumatologue", 4, (20, 30), (
        "Douleurs articulaires", "Suivi arthrose", "Ostéoporose", "Sciatique",
    )),
    Specialty("oto-rhino-laryngologiste", 5, (15, 20), (
        "Otite", "Sinusite", "Acouphènes", "Baisse de l'audition", "Angines à répétition",
    )),
)
NOTES = (
    "Patient anxieux, prévoir du temps", "Tiers payant", "Préfère être appelé sur son portable",
    "Apporter les derniers résultats d'analyse", "Retards fréquents", "Accompagné d'un interprète",
    "Venir à jeun", "Dépassement d'honoraires expliqué",
)
PRACTICE_KINDS = ("Cabinet médical", "Centre de santé", "Maison de santé", "Cabinet de groupe", "Pôle santé")


@dataclass(frozen=True)
class Town:
    name: str
    postcode: str
    timezone: str


# Practices 2, 12, 22... are overseas, in turn in each of these towns; the others are in Europe/Paris.
OVERSEAS_TOWNS = (
    Town("Fort-de-France", "97200", "America/Martinique"),
    Town("Saint-Denis", "97400", "Indian/Reunion"),
    Town("Le Lamentin", "97232", "America/Martinique"),
    Town("Saint-Pierre", "97410", "Indian/Reunion"),
)
OVERSEAS_EVERY, OVERSEAS_FIRST = 10, 2


class GrantState(enum.StrEnum):
    LIVE = "live"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class DemoGrant:
    practices: slice  # positions in the list of practices
    scopes: frozenset[Scope]
    state: GrantState = GrantState.LIVE
    horizon: ReadingHorizon = reading_horizon.DEFAULT  # each profile's own: see api/reading_horizon.py


@dataclass(frozen=True)
class DemoPartner:
    name: str
    description: str
    grants: tuple[DemoGrant, ...] = ()
    status: PartnerStatus = PartnerStatus.ACTIVE
    books_share: float = 0.0  # of its practices' appointments made after the grant, booked through it


EVERY_SCOPE = frozenset(Scope)
READ = frozenset({Scope.APPOINTMENTS_READ})
IDENTITY = READ | {Scope.PATIENTS_IDENTITY}
CONTACT = IDENTITY | {Scope.PATIENTS_CONTACT}
TELECONSULTATION = READ | {Scope.APPOINTMENTS_WRITE, Scope.APPOINTMENTS_REASON}

# Every kind of partner the API tells apart. Positions are taken in the list of practices (the
# small size has three), so that each size gets the same kinds of partners.
DEMO_PARTNERS = (
    DemoPartner(
        "Logimed", "Practice-management software: every scope, at every other practice.",
        (DemoGrant(slice(0, None, 2), EVERY_SCOPE, horizon=reading_horizon.PRACTICE_MANAGEMENT),),
    ),
    DemoPartner(
        "AgendaPlus", "Online booking directory: appointments and patient identity, no contact details.",
        (DemoGrant(slice(1, None, 2), IDENTITY, horizon=reading_horizon.BOOKING_DIRECTORY),),
    ),
    DemoPartner(
        "TeleConsult+", "Teleconsultation: reads, books and sees reasons at one practice.",
        (DemoGrant(slice(0, 1), TELECONSULTATION, horizon=reading_horizon.TELECONSULTATION),), books_share=0.2,
    ),
    DemoPartner(
        "RappelSMS", "Appointment reminders by SMS: its grant has expired.",
        (DemoGrant(slice(1, 2), CONTACT, GrantState.EXPIRED, horizon=reading_horizon.REMINDERS),),
    ),
    DemoPartner(
        "StatSanté", "Activity statistics: the practice revoked its grant.",
        (DemoGrant(slice(0, 1), READ, GrantState.REVOKED, horizon=reading_horizon.READ_ONLY_STATISTICS),),
    ),
    DemoPartner("Newcomer", "Signed up, connected to no practice yet."),
    DemoPartner(
        "Suspendu SA", "Suspended by the operator: its key is refused although its grant is live.",
        (DemoGrant(slice(0, 1), EVERY_SCOPE),), status=PartnerStatus.SUSPENDED,
    ),
)


class SeedError(Exception):
    """A refusal worded for the operator: unknown size, or a database that is not empty."""


@dataclass(frozen=True)
class SeedReport:
    size: str
    seed: int
    reference_date: date
    counts: dict[str, int]
    keys: dict[str, dict[str, Any]]  # the keys file's content: partner name -> key, status, grants
    seconds: float


def reference_date_for(seed: int) -> date:
    """The day the data is centred on: fixed by the seed, so that the same seed gives the same rows."""
    return FIRST_REFERENCE_DAY + timedelta(days=seed % 28)


def seed(
    engine: Engine,
    size: str,
    seed: int = 2020,
    keys_file: Path | None = None,
    reference_date: date | None = None,
    *,
    progress: bool = True,
) -> SeedReport:
    """Fill an empty, migrated database with demo data, and write the partners' keys to `keys_file`.

    `reference_date` (default: `reference_date_for(seed)`) is "today" for the data: appointments
    run from six months before it to two months after, and live grants expire a year after it.
    Raises `SeedError` for an unknown size or a database that already has practices.
    """
    started = clock.perf_counter()
    if size not in SIZES:
        raise SeedError(f"unknown size {size!r}: choose {', '.join(SIZES)}")
    day = reference_date or reference_date_for(seed)
    state = _State(SIZES[size], day, seed)
    console = Console(stderr=True)
    progress_bar = Progress(
        TextColumn("{task.description:<13}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not (progress and console.is_terminal),
    )
    with engine.connect() as connection, _bulk_loading(connection), progress_bar as bar:
        _refuse_unless_empty(connection)
        practices = _practices(state)
        agendas = _agendas(state, practices)
        with connection.begin():
            connection.execute(insert(Practice), practices)
            connection.execute(insert(Practitioner), [a.row for a in agendas])
            connection.execute(insert(PracticeMembership), _memberships(state, agendas))
        keys, bookers = _partners(state, connection, practices)
        counts = _people_and_appointments(state, connection, practices, agendas, bookers, bar)
        _finish(connection, counts["appointments"])
    counts.update(practices=len(practices), practitioners=len(agendas), partners=len(DEMO_PARTNERS))
    if keys_file is not None:
        keys_file.write_text(json.dumps(keys, indent=2, ensure_ascii=False) + "\n")
        keys_file.chmod(0o600)
    return SeedReport(size, seed, day, counts, keys, round(clock.perf_counter() - started, 2))


@dataclass
class _State:
    """The seeded generators and the timeline every part of the data shares."""

    size: SeedSize
    day: date
    seed: int
    reference: datetime = field(init=False)
    rng: random.Random = field(init=False)
    ids: random.Random = field(init=False)
    fake: Faker = field(init=False)

    def __post_init__(self) -> None:
        self.reference = datetime.combine(self.day, time(), tzinfo=UTC)
        # Public ids have their own stream: drawing other values differently does not change them.
        self.rng = random.Random(f"{self.seed}/data")
        self.ids = random.Random(f"{self.seed}/ids")
        self.fake = Faker("fr_FR")
        self.fake.seed_instance(self.seed)

    def public_id(self, kind: str) -> str:
        """Same format as `api.ids.new_public_id`, drawn from the seeded generator."""
        random_part = base64.b32encode(self.ids.getrandbits(128).to_bytes(16, "big")).decode().rstrip("=").lower()
        return f"{KIND_PREFIXES[kind]}_{random_part}"

    def ago(self, days: float) -> datetime:
        return self.reference - timedelta(seconds=round(days * 86_400))


@contextmanager
def _bulk_loading(connection: Connection) -> Iterator[None]:
    """Commits that wait for no disk flush, for the seeding connection only: a crash can lose the
    last chunks, never corrupt the database, and a half-seeded database is dropped anyway."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()
        cache_size = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
        connection.exec_driver_sql("PRAGMA synchronous=NORMAL")  # in WAL mode: flush at checkpoints only
        connection.exec_driver_sql("PRAGMA cache_size=-262144")  # 256 MiB: the indexes' pages stay in memory
    elif dialect == "postgresql":
        connection.exec_driver_sql("SET synchronous_commit = off")
    connection.commit()
    try:
        yield
    finally:
        connection.rollback()
        if dialect == "sqlite":
            connection.exec_driver_sql(f"PRAGMA synchronous={int(synchronous)}")
            connection.exec_driver_sql(f"PRAGMA cache_size={int(cache_size)}")
        elif dialect == "postgresql":
            connection.exec_driver_sql("RESET synchronous_commit")
        connection.commit()


def _refuse_unless_empty(connection: Connection) -> None:
    for model in (Practice, Practitioner):
        count = connection.scalar(select(func.count()).select_from(model))
        if count:
            raise SeedError(f"the database already has {count} {model.__tablename__}: seed only an empty database")
    names = [partner.name for partner in DEMO_PARTNERS]
    taken = connection.scalars(select(Partner.name).where(Partner.name.in_(names))).all()
    connection.rollback()
    if taken:
        raise SeedError(f"partners named {', '.join(sorted(taken))} exist already: seed only an empty database")


def _practices(state: _State) -> list[dict[str, Any]]:
    fake, rng = state.fake, state.rng
    rows: list[dict[str, Any]] = []
    names: set[str] = set()
    for position in range(state.size.practices):
        if position % OVERSEAS_EVERY == OVERSEAS_FIRST:
            town = OVERSEAS_TOWNS[position // OVERSEAS_EVERY % len(OVERSEAS_TOWNS)]
        else:
            department = rng.choice([d for d in range(1, 96) if d != 20])
            town = Town(fake.city(), f"{department:02d}{rng.randrange(100):02d}0", "Europe/Paris")
        name = f"{rng.choice(PRACTICE_KINDS)} {town.name}"
        while name in names:
            name = f"{rng.choice(PRACTICE_KINDS)} {fake.last_name()} – {town.name}"  # noqa: RUF001  (French typography: a real en dash in a name)
        names.add(name)
        rows.append({
            "id": position + 1, "public_id": state.public_id("Practice"), "name": name,
            "address": f"{fake.street_address()}, {town.postcode} {town.name}", "timezone": town.timezone,
        })
    return rows


@dataclass(frozen=True)
class _Agenda:
    """A practitioner, and when and where they see patients."""

    row: dict[str, Any]
    specialty: Specialty
    minutes: int
    weekday_slots: tuple[int, ...]  # start times, minutes after local midnight
    saturday_slots: tuple[int, ...]  # empty: no Saturday mornings
    practice_on: dict[int, int]  # weekday -> practice id
    away_from: date  # two weeks of holidays
    activity: float  # how full their agenda is, relative to the others

    @property
    def id(self) -> int:
        return int(self.row["id"])

    def slots_on(self, day: date) -> tuple[int, ...]:
        return self.saturday_slots if day.weekday() == 5 else self.weekday_slots


def _slots(start: int, end: int, minutes: int) -> tuple[int, ...]:
    return tuple(range(start, end - minutes + 1, minutes))


def _agendas(state: _State, practices: list[dict[str, Any]]) -> list[_Agenda]:
    """Every practice gets practitioners; a quarter of them also work at a second practice of the
    same time zone, on other weekdays, so that nobody is ever in two places at once."""
    fake, rng = state.fake, state.rng
    rpps = rng.sample(range(10**9), state.size.practitioners)
    sizes = [rng.uniform(0.5, 3.0) for _ in practices]
    agendas = []
    for number in range(state.size.practitioners):
        specialty = rng.choices(SPECIALTIES, weights=[s.weight for s in SPECIALTIES])[0]
        home = practices[number] if number < len(practices) else rng.choices(practices, weights=sizes)[0]
        weekdays = [0, 1, 2, 3, 4]
        if rng.random() < 0.3:
            weekdays.remove(rng.choice(weekdays))  # a day off, often enough a Wednesday in real life
        practice_on = {weekday: home["id"] for weekday in weekdays}
        neighbours = [p for p in practices if p["timezone"] == home["timezone"] and p is not home]
        if neighbours and rng.random() < 0.25:
            elsewhere = rng.choice(neighbours)["id"]
            for weekday in rng.sample(weekdays, len(weekdays) // 2):
                practice_on[weekday] = elsewhere
        saturdays = rng.random() < 0.2
        if saturdays:
            practice_on[5] = home["id"]
        minutes = rng.choice(specialty.minutes)
        morning = (rng.choice((480, 510, 540)), rng.choice((720, 750)))
        afternoon = (rng.choice((810, 840)), rng.choice((1080, 1110, 1140)))
        agendas.append(_Agenda(
            row={
                "id": number + 1, "first_name": fake.first_name(), "last_name": fake.last_name(),
                "specialty": specialty.name, "rpps": f"10{rpps[number]:09d}",
            },
            specialty=specialty,
            minutes=minutes,
            weekday_slots=_slots(*morning, minutes) + _slots(*afternoon, minutes),
            saturday_slots=_slots(540, 720, minutes) if saturdays else (),
            practice_on=practice_on,
            away_from=state.day + timedelta(days=rng.randrange(-DAYS_BEFORE, DAYS_AFTER)),
            activity=rng.uniform(0.6, 1.4),
        ))
    return agendas


def _memberships(state: _State, agendas: list[_Agenda]) -> list[dict[str, Any]]:
    return [
        {"practice_id": practice_id, "practitioner_id": agenda.id, "public_id": state.public_id("Practitioner")}
        for agenda in agendas
        for practice_id in sorted(set(agenda.practice_on.values()))
    ]


def _partners(
    state: _State, connection: Connection, practices: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], dict[int, list[tuple[int, float, datetime]]]]:
    """The demo partners, a key each, and their grants. Returns the keys file's content and, per
    practice id, the partners booking some of its appointments (id, share, since when)."""
    keys: dict[str, dict[str, Any]] = {}
    bookers: dict[int, list[tuple[int, float, datetime]]] = {}
    with Session(connection) as session, session.begin():
        for number, demo in enumerate(DEMO_PARTNERS):
            partner = Partner(
                public_id=state.public_id("Partner"), name=demo.name, status=demo.status,
                created_at=state.ago(400 - 30 * number),
            )
            issued = issue_key()
            # Open: the demo's keys are for exploring in GraphiQL (`seed_trusted_demo` adds a trusted one).
            partner.keys.append(
                PartnerKey(prefix=issued.prefix, secret_hash=issued.secret_hash, label="demo", mode=KeyMode.OPEN)
            )
            session.add(partner)
            session.flush()
            entry: dict[str, Any] = {
                "key": issued.token, "status": demo.status.value, "description": demo.description, "grants": [],
            }
            for demo_grant in demo.grants:
                for practice in practices[demo_grant.practices]:
                    grant = _grant(state, partner, practice, demo_grant)
                    session.add(grant)
                    entry["grants"].append({
                        "practice": practice["name"], "practice_id": practice["public_id"],
                        "scopes": sorted(scope.value for scope in demo_grant.scopes),
                        "expires_at": grant.expires_at.isoformat(), "revoked": grant.revoked_at is not None,
                        "days_back": grant.days_back, "days_ahead": grant.days_ahead,
                    })
                    books = demo_grant.state == GrantState.LIVE and Scope.APPOINTMENTS_WRITE in demo_grant.scopes
                    if demo.books_share and books:
                        bookers.setdefault(practice["id"], []).append((partner.id, demo.books_share, grant.granted_at))
            keys[demo.name] = entry
    return keys, bookers


def _grant(state: _State, partner: Partner, practice: dict[str, Any], demo: DemoGrant) -> Grant:
    granted_at, expires_at, revoked_at = state.ago(200), state.reference + GRANT_DURATION, None
    if demo.state == GrantState.EXPIRED:
        granted_at, expires_at = state.ago(410), state.ago(45)
    elif demo.state == GrantState.REVOKED:
        revoked_at = state.ago(20)
    grant = Grant(
        public_id=state.public_id("Grant"), partner_id=partner.id, practice_id=practice["id"],
        granted_at=granted_at, expires_at=expires_at, revoked_at=revoked_at,
        days_back=demo.horizon.days_back, days_ahead=demo.horizon.days_ahead,
    )
    grant.set_scopes(set(demo.scopes))
    return grant


def _french_holidays(first: date, last: date) -> set[date]:
    days = set()
    for year in range(first.year, last.year + 1):
        sunday = easter(year)
        fixed = ((1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25))
        days |= {date(year, month, day) for month, day in fixed}
        days |= {sunday + timedelta(days=n) for n in (1, 39, 50)}  # Easter Monday, Ascension, Whit Monday
    return days


def _fill_rate(state: _State, day: date) -> float:
    """How booked a day is: past days fully, future ones less and less."""
    ahead = (day - state.day).days
    return 1.0 if ahead < 0 else 1.0 - 0.65 * ahead / DAYS_AFTER


@dataclass
class _Draft:
    starts_at: datetime
    ends_at: datetime
    practitioner_id: int
    children: bool
    status: AppointmentStatus
    reason: str | None
    internal_note: str | None
    created_at: datetime
    updated_at: datetime
    source_partner_id: int | None
    patient_id: int = 0


def _people_and_appointments(
    state: _State,
    connection: Connection,
    practices: list[dict[str, Any]],
    agendas: list[_Agenda],
    bookers: dict[int, list[tuple[int, float, datetime]]],
    bar: Progress,
) -> dict[str, int]:
    """Practice after practice: its appointments, then its patients, shared out so that each has
    several appointments. Patients are written before the appointments that name them."""
    first, last = state.day - timedelta(days=DAYS_BEFORE), state.day + timedelta(days=DAYS_AFTER - 1)
    holidays = _french_holidays(first, last)
    calendar = (first + timedelta(days=n) for n in range(DAYS_BEFORE + DAYS_AFTER))
    days = [day for day in calendar if day.weekday() != 6 and day not in holidays]
    # Who works where on which day, and how busy each of those days is expected to be.
    workdays: dict[int, list[tuple[_Agenda, date, float]]] = {p["id"]: [] for p in practices}
    for agenda in agendas:
        for day in days:
            practice_id = agenda.practice_on.get(day.weekday())
            if practice_id is None or agenda.away_from <= day < agenda.away_from + timedelta(days=14):
                continue
            load = agenda.activity * _fill_rate(state, day) * len(agenda.slots_on(day)) / len(agenda.weekday_slots)
            workdays[practice_id].append((agenda, day, load))
    loads = [sum(load for _, _, load in workdays[p["id"]]) for p in practices]
    per_load = state.size.appointments / sum(loads)
    patients_per_practice = _share_out(state.size.patients, loads)

    patients_task = bar.add_task("patients", total=state.size.patients)
    appointments_task = bar.add_task("appointments", total=state.size.appointments)
    patient_ids = itertools.count(1)
    written = 0
    for practice, patient_count in zip(practices, patients_per_practice, strict=True):
        zone = ZoneInfo(practice["timezone"])
        drafts = [
            draft
            for agenda, day, load in workdays[practice["id"]]
            for draft in _day(state, agenda, day, zone, load * per_load, bookers.get(practice["id"], []))
        ]
        patients = _patients(state, practice["id"], drafts, patient_count, patient_ids)
        _insert(connection, Patient, patients, lambda n: bar.advance(patients_task, n))
        drafts.sort(key=lambda d: (d.updated_at, d.starts_at, d.practitioner_id))
        rows = [
            {
                "id": written + number,
                "public_id": state.public_id("Appointment"),
                "practice_id": practice["id"],
                "practitioner_id": d.practitioner_id,
                "patient_id": d.patient_id,
                "starts_at": d.starts_at,
                "ends_at": d.ends_at,
                "status": d.status,
                "reason": d.reason,
                "internal_note": d.internal_note,
                "source_partner_id": d.source_partner_id,
                "time_set_by_partner_id": d.source_partner_id,  # a booking partner set the time it booked
                "created_at": d.created_at,
                "updated_at": d.updated_at,
                # The sync feed's order: by last change within a practice, practice after practice.
                "change_seq": written + number,
            }
            for number, d in enumerate(drafts, start=1)
        ]
        _insert(connection, Appointment, rows, lambda n: bar.advance(appointments_task, n))
        written += len(rows)
    bar.update(appointments_task, total=written, completed=written)
    return {"patients": sum(patients_per_practice), "appointments": written}


def _share_out(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split in proportion to `weights` (largest remainders), at least one each."""
    exact = [total * w / sum(weights) for w in weights]
    shares = [max(1, int(x)) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: int(exact[i]) - exact[i])
    for i in itertools.islice(itertools.cycle(by_remainder), max(0, total - sum(shares))):
        shares[i] += 1
    return shares


def _day(
    state: _State,
    agenda: _Agenda,
    day: date,
    zone: ZoneInfo,
    expected: float,
    bookers: list[tuple[int, float, datetime]],
) -> list[_Draft]:
    """One practitioner's appointments on one day: distinct slots of their agenda, so never two at once."""
    rng = state.rng
    slots = agenda.slots_on(day)
    count = min(len(slots), int(expected * rng.uniform(0.6, 1.4) + rng.random()))
    # Offices are never open across a change of daylight saving time (at night), so one offset holds all day.
    midnight = datetime.combine(day, time(), tzinfo=UTC) - datetime.combine(day, time(12), tzinfo=zone).utcoffset()  # type: ignore[operator]  # aware datetimes: never None
    drafts = []
    for start in sorted(rng.sample(slots, count)):
        starts_at = midnight + timedelta(minutes=start)
        ends_at = starts_at + timedelta(minutes=agenda.minutes)
        lead = min(120.0, 0.05 + rng.expovariate(1 / 12))  # days between booking and visit
        created_at = starts_at - timedelta(seconds=round(lead * 86_400))
        if created_at >= state.reference:  # the data stops at the reference day: booked in the weeks before
            created_at = min(state.ago(rng.expovariate(1 / 20)), starts_at - timedelta(hours=1))
        roll = rng.random()
        if starts_at >= state.reference:
            status = AppointmentStatus.BOOKED if roll < 0.91 else AppointmentStatus.CANCELLED
        elif roll < 0.86:
            status = AppointmentStatus.FULFILLED
        else:
            status = AppointmentStatus.NOSHOW if roll < 0.91 else AppointmentStatus.CANCELLED
        if status == AppointmentStatus.BOOKED:
            updated_at = created_at
        elif status == AppointmentStatus.CANCELLED:
            window = (min(starts_at, state.reference) - created_at).total_seconds()
            updated_at = created_at + timedelta(seconds=round(window * rng.uniform(0.1, 1.0)))
        else:  # marked fulfilled or no-show after the visit
            updated_at = min(ends_at + timedelta(minutes=rng.randrange(5, 180)), state.reference)
        source = None
        for partner_id, share, since in bookers:
            if created_at >= since and rng.random() < share:
                source = partner_id
        drafts.append(
            _Draft(
                starts_at=starts_at,
                ends_at=ends_at,
                practitioner_id=agenda.id,
                children=agenda.specialty.children,
                status=status,
                reason=rng.choice(agenda.specialty.reasons) if rng.random() < 0.92 else None,
                internal_note=rng.choice(NOTES) if rng.random() < 0.08 else None,
                created_at=created_at,
                updated_at=updated_at,
                source_partner_id=source,
            )
        )
    return drafts


def _patients(
    state: _State, practice_id: int, drafts: list[_Draft], count: int, ids: itertools.count[int]
) -> list[dict[str, Any]]:
    """The practice's patients, and which appointment is whose: children see the paediatricians,
    adults everyone else; everyone comes at least twice when the agenda allows, some much more."""
    rng = state.rng
    pools = [[d for d in drafts if d.children], [d for d in drafts if not d.children]]
    children = round(count * len(pools[0]) / max(1, len(drafts)))
    if not pools[1]:
        children = count
    elif pools[0]:
        children = min(max(children, 1), count - 1)
    rows = []
    for pool, people, is_child in ((pools[0], children, True), (pools[1], count - children, False)):
        if not people:
            continue
        numbers = [next(ids) for _ in range(people)]
        first_booked: list[datetime | None] = [None] * people
        for draft, person in zip(pool, _visits(rng, len(pool), people), strict=True):
            draft.patient_id = numbers[person]
            seen = first_booked[person]
            first_booked[person] = draft.created_at if seen is None else min(seen, draft.created_at)
        rows += [_patient(state, practice_id, numbers[n], is_child, first_booked[n]) for n in range(people)]
    return rows


def _visits(rng: random.Random, appointments: int, people: int) -> list[int]:
    """Which person each appointment is for: `base` each, the rest to some more than others."""
    base = min(2, appointments // people)
    visits = [person for person in range(people) for _ in range(base)]
    cumulative = list(itertools.accumulate(0.2 + rng.expovariate(1.0) for _ in range(people)))
    visits += [bisect.bisect(cumulative, rng.random() * cumulative[-1]) for _ in range(appointments - len(visits))]
    rng.shuffle(visits)
    return visits


def _patient(
    state: _State, practice_id: int, number: int, child: bool, first_booked: datetime | None
) -> dict[str, Any]:
    rng, fake = state.rng, state.fake
    roll = rng.random()
    gender = (
        Gender.FEMALE
        if roll < 0.52
        else Gender.MALE
        if roll < 0.98
        else Gender.OTHER
        if roll < 0.99
        else Gender.UNKNOWN
    )
    if gender == Gender.FEMALE:
        first_name = fake.first_name_female()
    elif gender == Gender.MALE:
        first_name = fake.first_name_male()
    else:
        first_name = fake.first_name()
    last_name = fake.last_name()
    age = rng.uniform(0, 15) if child else rng.triangular(16, 95, 45)
    birth_date = state.day - timedelta(days=int(age * 365.25))
    known_for = rng.expovariate(1 / 400)  # days the file was open before the first booking
    return {
        "id": number,
        "public_id": state.public_id("Patient"),
        "practice_id": practice_id,
        "first_name": first_name,
        "last_name": last_name,
        "gender": gender,
        "birth_date": birth_date,
        "phone": _phone(rng) if rng.random() < 0.96 else None,
        "email": _email(rng, fake, first_name, last_name, birth_date) if rng.random() < 0.9 else None,
        "created_at": (first_booked or state.reference) - timedelta(seconds=round(known_for * 86_400)),
    }


def _phone(rng: random.Random) -> str:
    prefix = rng.choice("67") if rng.random() < 0.85 else rng.choice("12345")
    digits = f"0{prefix}{rng.randrange(10**8):08d}"
    return " ".join(digits[i : i + 2] for i in range(0, 10, 2))


def _email(rng: random.Random, fake: Faker, first_name: str, last_name: str, birth_date: date) -> str:
    first, last = _mailbox(first_name), _mailbox(last_name)
    local = rng.choice(
        (f"{first}.{last}", f"{first[0]}{last}", f"{first}{last}{birth_date.year % 100:02d}", f"{last}.{first}")
    )
    return f"{local}@{fake.free_email_domain()}"


def _mailbox(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return "".join(c for c in ascii_name if c.isalnum() or c == "-")


def _insert(
    connection: Connection, model: type[Base], rows: list[dict[str, Any]], advance: Callable[[int], None]
) -> None:
    """Executemany in chunks, one transaction each."""
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = rows[start : start + CHUNK_ROWS]
        with connection.begin():
            connection.execute(insert(model), chunk)
        advance(len(chunk))


def _finish(connection: Connection, last_change_seq: int) -> None:
    with connection.begin():
        done = connection.execute(update(ChangeCounter).where(ChangeCounter.id == 1).values(value=last_change_seq))
        if not done.rowcount:
            connection.execute(insert(ChangeCounter).values(id=1, value=last_change_seq))
        if connection.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in ("practices", "practitioners", "patients", "appointments"):
                connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                )
