"""Bounded exposure, end to end: 30 simulated days of attacks and of legitimate work.

    python -m bench.extraction [--size medium] [--days 30] [--no-postgres] [--out bench/results/extraction.md]

The data set is seeded once (`bench/data/extraction-<size>.db`); each scenario runs on its own copy
of it, through the whole app in process (`api.http.app.create_app`) with a settable clock
(`api.clock.SettableClock`) that starts on the data's reference day: days pass by moving the clock,
never by waiting. Settings are the defaults, except the alert webhook, which points at a receiver on
127.0.0.1 that verifies every signature.

Attacks use Logimed's key (every scope, every other practice). Legitimate workloads are the seeded
partner profiles (`api.data.seed.DEMO_PARTNERS`) doing their job every day, while the practices
keep booking at their own pace. Per scenario the table gives what the responses actually carried
(patients with identity, with contact), how many of those were outside the grant's reading horizon
when read (a patient is inside on a day when the practice itself made an appointment of theirs
inside the horizon), the first warning (day, and patients the key held at that practice), what
stopped the attack, and what the webhook received. `check()` states the issue's "Done when";
tests/security/test_extraction_scenarios.py runs it on a smaller set.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, insert, select, text, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from api.clock import SettableClock
from api.data.database import make_sync_engine
from api.data.migrate import upgrade
from api.data.models import (
    AlertKind,
    Appointment,
    AppointmentStatus,
    ChangeCounter,
    ExtractionAlert,
    Grant,
    KeyMode,
    Patient,
    PatientDisclosure,
    Practice,
    PracticeMembership,
)
from api.data.seed import SIZES, SeedSize, reference_date_for, seed
from api.http.app import create_app
from api.ids import KIND_PREFIXES
from api.ledger.exposure import partner_exposure
from api.operators import accounts as operators
from api.protection.extraction import ExtractionGuard
from api.services.cursors import CursorCodec
from api.settings import Settings
from tests.server_process import LOOPBACK, partner_api_env, running_server

__all__ = [
    "ScenarioResult",
    "SimulatedWorld",
    "check",
    "concurrency_on_postgresql",
    "main",
    "prepare",
    "render",
    "run_all",
    "simulation_start",
]

HERE = Path(__file__).resolve().parent
DATA, RESULTS = HERE / "data", HERE / "results"
ATTACKER = "Logimed"
# Four practices as busy as the medium set's (the same patients, practitioners and appointments per
# practice), for the test: the limits, warnings and legitimate reads compare as on medium.
SIZES.setdefault("scenarios", SeedSize("scenarios", practices=4, practitioners=30, patients=6_000, appointments=30_000))
PACE = timedelta(seconds=10)  # between two requests of one client: a full 1,000-point page refills in 10 s
PATIENT, APPOINTMENT = KIND_PREFIXES["Patient"] + "_", KIND_PREFIXES["Appointment"] + "_"
IDENTITY, CONTACT = ("firstName", "lastName", "gender", "birthDate"), ("phone", "email")
PATIENT_FIELDS = "patient { id firstName lastName gender birthDate phone email }"
PAGE = f"""query Page($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!, $after: String) {{
  appointments(practiceId: $p, from: $from, to: $to, first: $n, after: $after) {{
    edges {{ node {{ id startsAt {PATIENT_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"""
# The medical reasons alone, the patient never selected (their health data all the same).
REASONS_PAGE = """query Reasons($p: ID!, $from: DateTime!, $to: DateTime!, $after: String) {
  appointments(practiceId: $p, from: $from, to: $to, first: 100, after: $after) {
    edges { node { id startsAt reason } } pageInfo { hasNextPage endCursor } } }"""
IDS_PAGE = """query Ids($p: ID!, $from: DateTime!, $to: DateTime!, $after: String) {
  appointments(practiceId: $p, from: $from, to: $to, first: 100, after: $after) {
    edges { node { patient { id } } } pageInfo { hasNextPage endCursor } } }"""
NODES = """query Nodes($ids: [ID!]!) {
  nodes(ids: $ids) { ... on Patient { id firstName lastName gender birthDate phone email } } }"""
FEED = f"""query Feed($p: ID!, $since: String) {{
  appointmentChanges(practiceId: $p, first: 100, since: $since) {{
    edges {{ node {{ kind appointment {{ id startsAt {PATIENT_FIELDS} }} }} }}
    pageInfo {{ hasNextPage endCursor }} }} }}"""
PRACTICES = "{ practices(first: 100) { edges { node { id name practitioners(first: 1) { edges { node { id } } } } } } }"
BOOK = """mutation Book($input: BookAppointmentInput!) { bookAppointment(input: $input) {
  __typename ... on AppointmentBooked { appointment { id } } } }"""
CANCEL = (
    "mutation Cancel($id: ID!) { "
    "cancelAppointment(appointmentId: $id) { ... on AppointmentCancelled { appointment { id status } } } }"
)
OWN = """query Own($ids: [ID!]!) {
  nodes(ids: $ids) { ... on Appointment { id startsAt status reason patient { id } } } }"""
SLOTS = """query Slots($p: ID!, $from: DateTime!, $to: DateTime!, $after: String) {
  appointments(practiceId: $p, from: $from, to: $to, first: 100, after: $after) {
    edges { node { startsAt endsAt status practitioner { id } } } pageInfo { hasNextPage endCursor } } }"""


# -- the receiver of the operators' webhook ------------------------------------------------------


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that verifies each Standard Webhooks signature and keeps the
    kinds it received (`extraction.warning`, `extraction.quarantine`...)."""

    def __init__(self, secret: str) -> None:
        verifier = Webhook(secret)
        received: list[dict[str, Any]] = []
        self.received = received
        arrived = self.arrived = threading.Condition()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                verifier.verify(body, dict(self.headers.items()))  # raises on a bad signature: a 500, retried
                with arrived:
                    received.append(json.loads(body))
                    arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def kinds(self) -> set[str]:
        return {message["data"]["kind"] for message in self.received}

    def wait_for(self, kinds: set[str], timeout: float) -> bool:
        """Until messages of these kinds have arrived (the workers' senders deliver in the background)."""
        with self.arrived:
            return self.arrived.wait_for(lambda: kinds <= self.kinds(), timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- what a scenario obtained --------------------------------------------------------------------


@dataclass
class ScenarioResult:
    name: str
    kind: str  # "attack" or "legitimate"
    identity: set[str] = field(default_factory=set)  # patient public ids whose identity a response carried
    contact: set[str] = field(default_factory=set)
    reason: set[str] = field(default_factory=set)  # patients the reason of one of whose appointments was carried
    outside_horizon: int = 0
    first_warning_day: int | None = None
    first_warning_count: int | None = None  # distinct patients the partner held at that practice then
    first_warning_kind: str = ""
    stopped_by: str = "-"
    stopped_day: int | None = None
    refusals: int = 0  # requests refused (any code), legitimate ones must have none
    alerts: int = 0
    webhook: set[str] = field(default_factory=set)
    busiest_day: int = 0  # most distinct patients read at one practice in one simulated day
    exposure_matches: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        warning = (
            f"day {self.first_warning_day}: {self.first_warning_count} ({self.first_warning_kind})"
            if self.first_warning_day is not None
            else "-"
        )
        stopped = f"{self.stopped_by} (day {self.stopped_day})" if self.stopped_day is not None else self.stopped_by
        return {
            "scenario": self.name,
            "patients with identity": len(self.identity),
            "with contact": len(self.contact),
            "with a reason": len(self.reason),
            "outside horizon": self.outside_horizon,
            "busiest practice-day": self.busiest_day,
            "first alert (day: patients held)": warning,
            "stopped by": stopped,
            "refusals": self.refusals,
            "alerts": self.alerts,
            "webhook": ", ".join(sorted(self.webhook)) or "-",
            "exposure = sent": "yes" if self.exposure_matches else "NO",
        }


class SimulatedWorld:
    """One simulated world: a copy of the data set, the app on it, its clock and the webhook receiver."""

    def __init__(
        self, template: Path, workdir: Path, name: str, start: datetime, settings: dict[str, Any] | None = None
    ) -> None:
        self.path = workdir / f"{name}.db"
        shutil.copyfile(template, self.path)
        self.url = f"sqlite:///{self.path}"
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.receiver = WebhookReceiver(secret)
        self.settings = Settings(
            database_url=self.url,
            secret_key="bench",
            alert_webhook_url=self.receiver.url,
            alert_webhook_secret=secret,
            **(settings or {}),
        )
        self.clock = SettableClock(start)
        self.start = start
        self.app = create_app(self.settings, clock=self.clock)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://bench")
        self.engine = make_sync_engine(self.url)
        # (patient, practice, when, "identity"|"contact"|"id"|"reason")
        self.seen: list[tuple[str, str, datetime, str]] = []
        self._reasons: list[str] = []  # appointments whose reason the response being harvested carried
        self.codes: list[str] = []

    @property
    def day(self) -> int:
        return (self.clock() - self.start) // timedelta(days=1)

    async def query(
        self, key: str, document: str, variables: dict[str, Any] | None = None, practice: str = ""
    ) -> dict[str, Any]:
        """One request, `PACE` after the previous one; what it carried is harvested."""
        self.clock.advance(seconds=PACE.total_seconds())
        response = await self.http.post(
            "/graphql",
            json={"query": document, "variables": variables or {}},
            headers={"Authorization": f"Bearer {key}"},
        )
        body = response.json()
        self.codes.extend(e.get("extensions", {}).get("code", "") for e in body.get("errors") or [])
        self._harvest(body.get("data"), practice)
        if self._reasons:  # whose health data it is, read from the rows
            with Session(self.engine) as session:
                patients = session.scalars(
                    select(Patient.public_id)
                    .join(Appointment, Appointment.patient_id == Patient.id)
                    .where(Appointment.public_id.in_(self._reasons))
                )
                self.seen += [(patient, practice, self.clock(), "reason") for patient in patients]
            self._reasons.clear()
        return body

    def _harvest(self, value: Any, practice: str) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("id"), str) and value["id"].startswith(PATIENT):
                now = self.clock()
                self.seen.append((value["id"], practice, now, "id"))
                if any(value.get(f) is not None for f in IDENTITY):
                    self.seen.append((value["id"], practice, now, "identity"))
                if any(value.get(f) is not None for f in CONTACT):
                    self.seen.append((value["id"], practice, now, "contact"))
            elif isinstance(value.get("id"), str) and value["id"].startswith(APPOINTMENT) and value.get("reason"):
                self._reasons.append(value["id"])
            for item in value.values():
                self._harvest(item, practice)
        elif isinstance(value, list):
            for item in value:
                self._harvest(item, practice)

    async def deliver(self) -> None:
        await self.app.state.alert_sender.deliver_due()

    async def close(self) -> None:
        await self.http.aclose()
        await self.app.state.engine.dispose()
        self.engine.dispose()
        self.receiver.close()


# -- the practices keep working ------------------------------------------------------------------


def practice_activity(engine: Engine, day_start: datetime, rng: random.Random) -> None:
    """One day of the practices' own bookings (at the pace of their last four weeks, for the coming
    eight weeks) and cancellations (5 %), so that the change feed moves and agendas stay full."""
    with Session(engine) as session, session.begin():
        since = day_start - timedelta(days=28)
        rates = session.execute(
            select(Appointment.practice_id, func.count())
            .where(
                Appointment.starts_at >= since,
                Appointment.starts_at < day_start,
                Appointment.source_partner_id.is_(None),
            )
            .group_by(Appointment.practice_id)
        ).all()
        seq = session.execute(select(ChangeCounter.value).where(ChangeCounter.id == 1)).scalar_one()
        rows = []
        for practice_id, count in rates:
            doctors = session.scalars(
                select(PracticeMembership.practitioner_id).where(PracticeMembership.practice_id == practice_id)
            ).all()
            patients = session.scalars(
                select(Patient.id).where(Patient.practice_id == practice_id, Patient.source_partner_id.is_(None))
            ).all()
            for _ in range(round(count / 28)):
                start = day_start + timedelta(
                    days=rng.randrange(1, 57), hours=rng.randrange(8, 18), minutes=15 * rng.randrange(4)
                )
                seq += 1
                rows.append(
                    dict(
                        public_id=f"apt_{secrets.token_hex(13)}",
                        practice_id=practice_id,
                        practitioner_id=rng.choice(doctors),
                        patient_id=rng.choice(patients),
                        starts_at=start,
                        ends_at=start + timedelta(minutes=15),
                        status=AppointmentStatus.BOOKED,
                        created_at=day_start,
                        updated_at=day_start,
                        change_seq=seq,
                    )
                )
        if rows:
            session.execute(insert(Appointment), rows)
        upcoming = session.scalars(
            select(Appointment.id)
            .where(
                Appointment.starts_at >= day_start,
                Appointment.starts_at < day_start + timedelta(days=14),
                Appointment.status == AppointmentStatus.BOOKED,
                Appointment.source_partner_id.is_(None),
            )
            .order_by(Appointment.id)
        ).all()
        for appointment_id in rng.sample(list(upcoming), k=len(rows) // 20):
            seq += 1
            session.execute(
                update(Appointment)
                .where(Appointment.id == appointment_id)
                .values(status=AppointmentStatus.CANCELLED, updated_at=day_start, change_seq=seq)
            )
        session.execute(update(ChangeCounter).where(ChangeCounter.id == 1).values(value=seq))


# -- attacks ---------------------------------------------------------------------------------------


class Attacker:
    """Requests with stolen keys, in turn; a key answered KEY_QUARANTINED is dropped."""

    def __init__(self, world: SimulatedWorld, keys: list[str]) -> None:
        self.world, self.keys, self.turn = world, list(keys), 0
        self.stopped: tuple[str, int] | None = None
        self.bounded_by: set[str] = set()  # what held back an attacker that was never refused

    async def request(self, document: str, variables: dict[str, Any], practice: str) -> dict[str, Any] | None:
        if not self.keys:
            return None
        key = self.keys[self.turn % len(self.keys)]
        self.turn += 1
        body = await self.world.query(key, document, variables, practice)
        codes = {e.get("extensions", {}).get("code") for e in body.get("errors") or []}
        if codes & {"KEY_QUARANTINED", "EXTRACTION_LIMIT_EXCEEDED"} and any(
            e.get("extensions", {}).get("quarantined") or e["extensions"]["code"] == "KEY_QUARANTINED"
            for e in body["errors"]
        ):
            self.keys.remove(key)
            if self.stopped is None:
                self.stopped = ("refusal, key quarantined", self.world.day)
        return body


@dataclass
class Window:
    """Where an attacker is in one practice: the day it pages, and its cursor in it."""

    practice: str
    start: datetime
    after: str | None = None


async def _practices(world: SimulatedWorld, key: str) -> list[tuple[str, str]]:
    """(practice id, one practitioner id) of every practice the key reads."""
    body = await world.query(key, PRACTICES)
    return [
        (edge["node"]["id"], edge["node"]["practitioners"]["edges"][0]["node"]["id"])
        for edge in body["data"]["practices"]["edges"]
        if edge["node"]["practitioners"]["edges"]
    ]


def _windows_ahead(day_start: datetime, practices: list[str]) -> list[Window]:
    # The whole horizon of a practice-management grant, from a week back, day by day.
    return [Window(p, day_start - timedelta(days=7)) for p in practices]


def _day_variables(w: Window, **more: object) -> dict[str, object]:
    """The variables of a page of the window's day, at its cursor."""
    return {
        "p": w.practice,
        "from": w.start.isoformat(),
        "to": (w.start + timedelta(days=1)).isoformat(),
        "after": w.after,
        **more,
    }


def _turn_page(w: Window, page: dict[str, Any] | None) -> None:
    """On to the next page of the day, or to the next day when the day is read (or refused)."""
    if page and page["pageInfo"]["hasNextPage"]:
        w.after = page["pageInfo"]["endCursor"]
    else:
        w.start, w.after = w.start + timedelta(days=1), None


async def _page_step(attacker: Attacker, w: Window, day_start: datetime, n: int = 100) -> bool:
    """One page of the window's day; False when the horizon is read through."""
    if w.start >= day_start + timedelta(days=90):
        return False
    body = await attacker.request(PAGE, _day_variables(w, n=n), w.practice)
    _turn_page(w, ((body or {}).get("data") or {}).get("appointments"))
    return True


async def _reasons_step(attacker: Attacker, w: Window, day_start: datetime) -> bool:
    """One page of the window's day, its reasons alone."""
    if w.start >= day_start + timedelta(days=90):
        return False
    body = await attacker.request(REASONS_PAGE, _day_variables(w), w.practice)
    _turn_page(w, ((body or {}).get("data") or {}).get("appointments"))
    return True


async def _nodes_step(attacker: Attacker, w: Window, day_start: datetime) -> bool:
    """Ids of a day's appointments' patients, then their fields through `nodes`."""
    if w.start >= day_start + timedelta(days=90):
        return False
    body = await attacker.request(IDS_PAGE, _day_variables(w), w.practice)
    page = ((body or {}).get("data") or {}).get("appointments")
    ids = sorted({e["node"]["patient"]["id"] for e in (page or {}).get("edges", []) if e["node"]["patient"]})
    if ids:
        await attacker.request(NODES, {"ids": ids}, w.practice)
    _turn_page(w, page)
    return True


async def _feed_step(attacker: Attacker, w: Window, day_start: datetime) -> bool:
    """The change feed from its very beginning (`since` null), page after page."""
    body = await attacker.request(FEED, {"p": w.practice, "since": w.after}, w.practice)
    page = ((body or {}).get("data") or {}).get("appointmentChanges")
    if not page or not page["edges"]:
        return False
    w.after = page["pageInfo"]["endCursor"]
    return bool(page["pageInfo"]["hasNextPage"])


Step = Callable[[Attacker, Window, datetime], Awaitable[bool]]


async def _round_robin(
    world: SimulatedWorld,
    attacker: Attacker,
    practices: list[str],
    days: int,
    step: Step,
    rng: random.Random,
    feed: bool = False,
) -> None:
    """Each day, one request per practice in turn (so every practice nears its limit together), until
    the horizon is read or every key is quarantined."""
    windows = _windows_ahead(world.start, practices)
    for day in range(days):
        day_start = world.start + timedelta(days=day)
        world.clock.now = day_start
        practice_activity(world.engine, day_start, rng)
        if not feed:
            windows = _windows_ahead(day_start, practices)
        active = list(windows)
        while active and attacker.keys:
            active = [w for w in active if await step(attacker, w, day_start) and attacker.keys]
        await world.deliver()
        if not attacker.keys:
            return


async def _just_under(
    world: SimulatedWorld,
    attacker: Attacker,
    practices: list[str],
    days: int,
    rng: random.Random,
    partner_id: int,
    n: int = 20,
) -> None:
    """An extractor who knows every limit (the worst case: an insider) and stops each practice for the
    day one page short of either; it reads on from where it stopped the day before."""
    guard = ExtractionGuard(world.settings)
    ids = _practice_ids(world.engine)
    windows = _windows_ahead(world.start, practices)
    for day in range(days):
        day_start = world.start + timedelta(days=day)
        world.clock.now = day_start
        practice_activity(world.engine, day_start, rng)
        limits = {}
        async with world.app.state.sessions() as session:
            for p in practices:
                limits[p] = await guard.budgets(session, partner_id, ids[p], day_start)
            await session.commit()
        for w in windows:
            if w.start < day_start - timedelta(days=7) or w.start >= day_start + timedelta(days=90):
                w.start, w.after = day_start - timedelta(days=7), None
        active = list(windows)
        while active and attacker.keys:
            still = []
            for w in active:
                short, long = limits[w.practice]
                held_day = _held(world, w.practice, world.clock() - short.window)
                held_month = _held(world, w.practice, world.clock() - long.window)
                if held_month + n > long.limit:
                    attacker.bounded_by.add("the 30-day limit")
                    continue
                if held_day + n > short.limit:
                    attacker.bounded_by.add("the 24 h limit")
                    continue
                if await _page_step(attacker, w, day_start, n) and attacker.keys:
                    still.append(w)
                else:
                    attacker.bounded_by.add("the horizon")
            active = still
        await world.deliver()
        if not attacker.keys:
            return


def _held(world: SimulatedWorld, practice: str, since: datetime) -> int:
    return len({p for p, pr, at, what in world.seen if pr == practice and what == "id" and at >= since})


def _practice_ids(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {public: internal for internal, public in session.execute(select(Practice.id, Practice.public_id))}


async def _inflate(world: SimulatedWorld, key: str, practice: str, practitioner: str, bookings: int) -> None:
    """The issue's inflation: book one-minute appointments for invented patients, then cancel them."""
    first = world.clock().replace(hour=20, minute=0, second=0, microsecond=0) + timedelta(days=1)
    for i in range(bookings):
        start = first + timedelta(days=i // 120, minutes=i % 120)
        body = await world.query(
            key,
            BOOK,
            {
                "input": {
                    "practiceId": practice,
                    "practitionerId": practitioner,
                    "startsAt": start.isoformat(),
                    "endsAt": (start + timedelta(minutes=1)).isoformat(),
                    "newPatient": {"firstName": "Inventé", "lastName": f"N{i}", "gender": "UNKNOWN"},
                }
            },
            practice,
        )
        booked = (body.get("data") or {}).get("bookAppointment") or {}
        if booked.get("__typename") == "AppointmentBooked":
            await world.query(key, CANCEL, {"id": booked["appointment"]["id"]}, practice)


# -- legitimate workloads --------------------------------------------------------------------------


class Legitimate:
    """A partner doing its job; every request must be served."""

    def __init__(self, world: SimulatedWorld, key: str) -> None:
        self.world, self.key = world, key

    async def query(self, document: str, variables: dict[str, Any], practice: str = "") -> dict[str, Any]:
        body = await self.world.query(self.key, document, variables, practice)
        return body

    async def pages(
        self, document: str, variables: dict[str, Any], practice: str, field_name: str = "appointments"
    ) -> None:
        after = None
        while True:
            body = await self.query(document, {**variables, "after": after}, practice)
            page = (body.get("data") or {}).get(field_name)
            if not page or not page["pageInfo"]["hasNextPage"]:
                return
            after = page["pageInfo"]["endCursor"]


async def reminders(job: Legitimate, practices: list[tuple[str, str]], day_start: datetime, _: dict[str, Any]) -> None:
    """An SMS reminder service: at 9:00, the next two days of each practice, with names and contact."""
    job.world.clock.now = day_start + timedelta(hours=9)
    tomorrow = day_start + timedelta(days=1)
    for practice, _doctor in practices:
        await job.pages(
            PAGE,
            {"p": practice, "from": tomorrow.isoformat(), "to": (tomorrow + timedelta(days=2)).isoformat(), "n": 100},
            practice,
        )


async def feed_sync(
    job: Legitimate, practices: list[tuple[str, str]], day_start: datetime, state: dict[str, Any]
) -> None:
    """Practice-management software: syncs each practice's change feed every hour from 7:00 to 20:00."""
    for hour in range(7, 21):
        job.world.clock.now = day_start + timedelta(hours=hour)
        for practice, _doctor in practices:
            while True:
                body = await job.query(FEED, {"p": practice, "since": state[practice]}, practice)
                page = (body.get("data") or {}).get("appointmentChanges")
                if not page:
                    break
                state[practice] = page["pageInfo"]["endCursor"]
                if not page["pageInfo"]["hasNextPage"]:
                    break


async def teleconsultation(
    job: Legitimate, practices: list[tuple[str, str]], day_start: datetime, state: dict[str, Any]
) -> None:
    """Teleconsultation: books its users' calls (new patients of the practice) over the coming week,
    and reads its own appointments of the coming week, reasons included, several times a day."""
    rng = state.setdefault("rng", random.Random(7))
    booked: list[tuple[datetime, str]] = state.setdefault("booked", [])
    for practice, doctor in practices:
        for i in range(8):
            job.world.clock.now = day_start + timedelta(hours=8, minutes=30 * i)
            start = day_start + timedelta(
                days=rng.randrange(1, 8), hours=rng.randrange(7, 21), minutes=rng.choice((0, 20, 40))
            )
            body = await job.query(
                BOOK,
                {
                    "input": {
                        "practiceId": practice,
                        "practitionerId": doctor,
                        "startsAt": start.isoformat(),
                        "endsAt": (start + timedelta(minutes=15)).isoformat(),
                        "reason": "Téléconsultation",
                        "newPatient": {"firstName": "Camille", "lastName": f"T{day_start:%j}{i}", "gender": "UNKNOWN"},
                    }
                },
                practice,
            )
            result = (body.get("data") or {}).get("bookAppointment") or {}
            if result.get("__typename") == "AppointmentBooked":
                booked.append((start, result["appointment"]["id"]))
    for hour in (8, 12, 17):
        job.world.clock.now = day_start + timedelta(hours=hour)
        mine = [i for start, i in booked if day_start <= start < day_start + timedelta(days=7)][:100]
        if mine:
            await job.query(OWN, {"ids": mine})


async def directory(job: Legitimate, practices: list[tuple[str, str]], day_start: datetime, _: dict[str, Any]) -> None:
    """An online booking directory: each practice's taken slots over the coming two weeks, to show
    the free ones (times and practitioners only)."""
    job.world.clock.now = day_start + timedelta(hours=6)
    for practice, _doctor in practices:
        end = day_start + timedelta(days=14)
        await job.pages(SLOTS, {"p": practice, "from": day_start.isoformat(), "to": end.isoformat()}, practice)


Job = Callable[[Legitimate, list[tuple[str, str]], datetime, dict[str, Any]], Awaitable[None]]
PROFILES: dict[str, tuple[str, Job]] = {
    "reminders (RappelSMS)": ("RappelSMS", reminders),
    "practice-management sync (Logimed)": ("Logimed", feed_sync),
    "teleconsultation (TeleConsult+)": ("TeleConsult+", teleconsultation),
    "booking directory (AgendaPlus)": ("AgendaPlus", directory),
}


def _renew_grants(engine: Engine, partner: str, until: datetime) -> None:
    """A seeded grant that has expired (RappelSMS's) renewed, as the practice would for a partner at work."""
    with Session(engine) as session, session.begin():
        partner_id = operators.find_partner(session, partner).id
        session.execute(
            update(Grant).where(Grant.partner_id == partner_id, Grant.revoked_at.is_(None)).values(expires_at=until)
        )


async def legitimate(
    template: Path, workdir: Path, start: datetime, keys: dict[str, Any], name: str, days: int
) -> ScenarioResult:
    partner, job = PROFILES[name]
    world = SimulatedWorld(template, workdir, f"legit-{partner}", start)
    try:
        _renew_grants(world.engine, partner, start + timedelta(days=365))
        key = keys[partner]["key"]
        practices = await _practices(world, key)
        state: dict[str, Any] = {}
        if job is feed_sync:  # it synced up to now before the simulation: its cursors start at the head
            with Session(world.engine) as session:
                head = session.execute(select(ChangeCounter.value)).scalar_one()
                partner_id = operators.find_partner(session, partner).id
            codec = CursorCodec(world.settings.secret_key.encode())
            state = {p: codec.encode(("changes", partner_id, p), [head]) for p, _ in practices}
        rng = random.Random(2020)
        world.codes.clear()
        for day in range(days):
            day_start = start + timedelta(days=day)
            practice_activity(world.engine, day_start, rng)
            await job(Legitimate(world, key), practices, day_start, state)
            await world.deliver()
        return measure(world, name, "legitimate", partner, None)
    finally:
        await world.close()


# -- measuring -------------------------------------------------------------------------------------


def measure(world: SimulatedWorld, name: str, kind: str, partner: str, attacker: Attacker | None) -> ScenarioResult:
    result = ScenarioResult(name, kind)
    with Session(world.engine) as session:
        partner_row = operators.find_partner(session, partner)
        own = set(session.scalars(select(Patient.public_id).where(Patient.source_partner_id == partner_row.id)))
        theirs = [(p, at, what) for p, _pr, at, what in world.seen if p not in own]
        result.identity = {p for p, _, what in theirs if what == "identity"}
        result.contact = {p for p, _, what in theirs if what == "contact"}
        result.reason = {p for p, _, what in theirs if what == "reason"}
        result.outside_horizon = _outside_horizon(
            session, partner_row.id, [(p, at) for p, at, what in theirs if what in ("identity", "contact")]
        )
        per_day: dict[tuple[str, int], set[str]] = defaultdict(set)
        for p, practice, at, what in world.seen:
            if what == "id" and p not in own:  # its own patients are no part of the practice's file
                per_day[(practice, (at - world.start) // timedelta(days=1))].add(p)
        result.busiest_day = max((len(v) for v in per_day.values()), default=0)
        alerts = session.scalars(
            select(ExtractionAlert)
            .where(ExtractionAlert.partner_id == partner_row.id)
            .order_by(ExtractionAlert.raised_at)
        ).all()
        result.alerts = len(alerts)
        # The first signal to the operators: a warning, or a refusal when one request jumped past the
        # limit from below the first warning's fraction (it is refused whole, so nothing more is held).
        signals = [a for a in alerts if a.kind in (AlertKind.WARNING, AlertKind.REFUSAL)]
        if signals:
            result.first_warning_day = (signals[0].raised_at - world.start) // timedelta(days=1)
            first = signals[0]
            practice = session.scalar(select(Practice.public_id).where(Practice.id == first.practice_id))
            # What the attacker holds of that practice then: patients whose identity or contact it got
            # (the alert's own count also has those it saw without either, outside the horizon).
            result.first_warning_count = len(
                {
                    p
                    for p, pr, at, what in world.seen
                    if pr == practice and what != "id" and at <= first.raised_at and p not in own
                }
            )
            result.first_warning_kind = first.kind.value
        report = partner_exposure(
            session, partner, world.start - timedelta(days=1), world.clock() + timedelta(seconds=1)
        )
        reported = {g: sum(p.with_groups.get(g, 0) for p in report.practices) for g in ("identity", "contact")}
        sent = {
            "identity": len({p for p, _, _, what in world.seen if what == "identity"}),
            "contact": len({p for p, _, _, what in world.seen if what == "contact"}),
        }
        result.exposure_matches = reported == sent
        result.extra["exposure"] = {"reported": reported, "sent": sent}
    result.refusals = sum(1 for code in world.codes if code)
    result.extra["codes"] = sorted(set(world.codes))
    result.webhook = world.receiver.kinds()
    if attacker is not None and attacker.stopped is not None:
        result.stopped_by, result.stopped_day = attacker.stopped
    return result


def _outside_horizon(session: Session, partner_id: int, obtained: list[tuple[str, datetime]]) -> int:
    """Patients whose identity or contact a response carried at a time when they had no appointment
    made by the practice inside the partner's reading horizon there (checked here on its own, from
    the rows, not by the app's rule)."""
    if not obtained:
        return 0
    horizon = {
        practice: (timedelta(days=back), timedelta(days=ahead), history)
        for practice, back, ahead, history in session.execute(
            select(Grant.practice_id, Grant.days_back, Grant.days_ahead, Grant.history_until).where(
                Grant.partner_id == partner_id, Grant.revoked_at.is_(None)
            )
        )
    }
    public = {p for p, _ in obtained}
    patients = dict(session.execute(select(Patient.public_id, Patient.id).where(Patient.public_id.in_(public))).all())
    starts: dict[int, list[tuple[int, datetime, datetime]]] = defaultdict(list)
    for patient_id, practice_id, starts_at, created_at in session.execute(
        select(Appointment.patient_id, Appointment.practice_id, Appointment.starts_at, Appointment.created_at).where(
            Appointment.patient_id.in_(patients.values()), Appointment.source_partner_id.is_(None)
        )
    ):
        starts[patient_id].append((practice_id, starts_at, created_at))
    outside = set()
    for p, at in obtained:
        inside = False
        for practice_id, starts_at, created_at in starts[patients[p]]:
            back, ahead, history = horizon.get(practice_id, (timedelta(0), timedelta(0), None))
            if created_at > at:  # booked later in the simulation
                continue
            if (history is not None and at < history) or at - back <= starts_at < at + ahead:
                inside = True
                break
        if not inside:
            outside.add(p)
    return len(outside)


# -- running the attacks ---------------------------------------------------------------------------


ATTACKS = (
    "paging every practice",
    "change feed",
    "ids then nodes",
    "book-and-cancel inflation",
    "several keys",
    "just under the daily limit",
    "reasons without their patients",
)


async def attack(
    template: Path, workdir: Path, start: datetime, keys: dict[str, Any], name: str, days: int
) -> ScenarioResult:
    world = SimulatedWorld(template, workdir, f"attack-{ATTACKS.index(name)}", start)
    try:
        key = keys[ATTACKER]["key"]
        stolen = [key]
        with Session(world.engine) as session, session.begin():
            partner_id = operators.find_partner(session, ATTACKER).id
            if name == "several keys":  # the partner's other keys, stolen from the same place
                stolen += [
                    operators.issue_partner_key(session, ATTACKER, label=f"stolen-{i}", mode=KeyMode.OPEN).token
                    for i in range(2)
                ]
        rng = random.Random(2020)  # the practices' own activity, the same in every scenario
        if name == "book-and-cancel inflation":  # the day before the reading (the clock never goes back)
            world.clock.now = start - timedelta(days=1) + timedelta(hours=8)
        practices = await _practices(world, key)
        attacker = Attacker(world, stolen)
        ids = [p for p, _ in practices]
        if name == "book-and-cancel inflation":
            # As many bookings as the issue's attacker made, at the largest practice, each cancelled.
            counts = _file_sizes(world.engine)
            practice, doctor = max(practices, key=lambda pd: counts[pd[0]])
            await _inflate(world, key, practice, doctor, 400)
        world.seen.clear()
        world.codes.clear()
        if name == "just under the daily limit":
            await _just_under(world, attacker, ids, days, rng, partner_id)
        elif name == "change feed":
            await _round_robin(world, attacker, ids, days, _feed_step, rng, feed=True)
        elif name == "ids then nodes":
            await _round_robin(world, attacker, ids, days, _nodes_step, rng)
        elif name == "reasons without their patients":
            await _round_robin(world, attacker, ids, days, _reasons_step, rng)
        else:
            await _round_robin(world, attacker, ids, days, _page_step, rng)
        result = measure(world, name, "attack", ATTACKER, attacker)
        if attacker.stopped is None:
            result.stopped_by = (
                f"never refused; held back by {', '.join(sorted(attacker.bounded_by))}"
                if name.startswith("just under")
                else "read through its horizon"
            )
        result.extra["keys quarantined"] = len(stolen) - len(attacker.keys)
        return result
    finally:
        await world.close()


def _file_sizes(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return dict(
            session.execute(
                select(Practice.public_id, func.count(Patient.id))
                .join(Patient, Patient.practice_id == Practice.id)
                .group_by(Practice.public_id)
            ).all()
        )


@contextmanager
def _two_workers(database_url: str, start: datetime, receiver: WebhookReceiver, secret: str) -> Iterator[str]:
    """`uvicorn --workers 2` (what `partner-api serve --workers 2` runs) on the simulation's clock."""
    from bench._clocked_app import OFFSET_SECONDS

    env = partner_api_env(
        database_url,
        secret_key="bench",
        alert_webhook_url=receiver.url,
        alert_webhook_secret=secret,
        alert_webhook_poll_seconds="0.5",
        # The cost budget would serialize the attacker (one full page per 10 s): lifted, so that the
        # requests really race; the distinct-patient budget keeps its defaults.
        budget_capacity="1000000",
        budget_refill_per_second="100000",
        max_concurrent_requests_per_partner="32",
    )
    env[OFFSET_SECONDS] = str((start - datetime.now(UTC)).total_seconds())

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "bench._clocked_app:create", "--factory", "--workers", "2",
            "--host", LOOPBACK, "--port", str(port), "--log-level", "warning",
        ]

    with running_server(command, env) as server:
        yield server.base


def concurrency_on_postgresql(size: str, start: datetime, concurrency: int = 24) -> ScenarioResult:
    """The paging attack, 24 requests at once on two workers on PostgreSQL: the distinct patients
    recorded and served at each practice never exceed its limits."""
    from tests.postgres_server import postgres_server

    result = ScenarioResult(f"{concurrency} at once, 2 workers, PostgreSQL", "attack")
    with ExitStack() as stack:
        work = stack.enter_context(tempfile.TemporaryDirectory(prefix="extraction-pg-"))
        # The test suite's server when it names one, else a throwaway one.
        admin = os.environ.get("PARTNER_API_TEST_POSTGRES_URL") or stack.enter_context(postgres_server())
        database = f"extraction_{secrets.token_hex(4)}"
        admin_engine = make_sync_engine(admin).execution_options(isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {database}"))
        stack.callback(admin_engine.dispose)
        stack.callback(lambda: admin_engine.connect().execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
        url = admin.rsplit("/", 1)[0] + f"/{database}"
        engine = make_sync_engine(url)
        upgrade(engine)
        keys_file = Path(work) / "keys.json"
        seed(engine, size, keys_file=keys_file, reference_date=start.date(), progress=False)
        key = json.loads(keys_file.read_text())[ATTACKER]["key"]
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        receiver = WebhookReceiver(secret)
        served: dict[str, set[str]] = defaultdict(set)
        codes: list[str] = []
        try:
            with _two_workers(url, start, receiver, secret) as base:
                asyncio.run(_concurrent_paging(base, key, start, concurrency, served, codes))
                with Session(engine) as session:
                    partner_id = operators.find_partner(session, ATTACKER).id
                    ids = dict(session.execute(select(Practice.public_id, Practice.id)).all())
                    recorded = dict(
                        session.execute(
                            select(PatientDisclosure.practice_id, func.count())
                            .where(PatientDisclosure.partner_id == partner_id)
                            .group_by(PatientDisclosure.practice_id)
                        ).all()
                    )
                    alerts = session.scalars(
                        select(ExtractionAlert)
                        .where(ExtractionAlert.partner_id == partner_id)
                        .order_by(ExtractionAlert.raised_at)
                    ).all()
                limits = asyncio.run(
                    _limits(url, partner_id, list(ids.values()), alerts[-1].raised_at if alerts else start)
                )
                receiver.wait_for({"quarantine"}, timeout=60)
        finally:
            receiver.close()
            engine.dispose()
    over = sum(max(0, recorded.get(i, 0) - limits[i]) for i in limits)  # the ledger of the budget
    over += sum(max(0, len(served[p]) - limits[ids[p]]) for p in served)
    result.identity = set().union(*served.values()) if served else set()
    result.contact = set(result.identity)
    result.extra.update({"over limit": over, "codes": sorted(set(codes)), "recorded": sum(recorded.values())})
    result.refusals = sum(1 for c in codes if c)
    result.alerts = len(alerts)
    result.webhook = receiver.kinds()
    signals = [a for a in alerts if a.kind in (AlertKind.WARNING, AlertKind.REFUSAL)]
    if signals:
        result.first_warning_day = (signals[0].raised_at - start) // timedelta(days=1)
        result.first_warning_count, result.first_warning_kind = signals[0].patients_in_window, signals[0].kind.value
    quarantined = "KEY_QUARANTINED" in codes or any(a.kind == AlertKind.QUARANTINE for a in alerts)
    result.stopped_by, result.stopped_day = (
        ("refusal, key quarantined", 0) if quarantined else ("read through its horizon", None)
    )
    return result


async def _limits(url: str, partner_id: int, practices: list[int], at: datetime) -> dict[int, int]:
    """Each practice's 24 h limit for the partner, as the guard computed it that day."""
    from api.data.database import make_async_engine, make_session_factory

    engine = make_async_engine(url)
    guard = ExtractionGuard(Settings(database_url=url))
    try:
        async with make_session_factory(engine)() as session:
            return {p: (await guard.budgets(session, partner_id, p, at))[0].limit for p in practices}
    finally:
        await engine.dispose()


async def _concurrent_paging(
    base: str, key: str, start: datetime, concurrency: int, served: dict[str, set[str]], codes: list[str]
) -> None:
    headers = {"Authorization": f"Bearer {key}"}

    async def post(document: str, variables: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:  # a connection each: both workers serve
            response = await client.post("/graphql", json={"query": document, "variables": variables}, headers=headers)
            body: dict[str, Any] = response.json()
            codes.extend(e.get("extensions", {}).get("code", "") for e in body.get("errors") or [])
            return body

    practices = [e["node"]["id"] for e in (await post(PRACTICES, {}))["data"]["practices"]["edges"]]
    # Disjoint windows: each practice's horizon cut into days, dealt out round-robin.
    windows = [(p, start + timedelta(days=d)) for d in range(-7, 90) for p in practices]
    for i in range(0, len(windows), concurrency):
        batch = windows[i : i + concurrency]
        bodies = await asyncio.gather(
            *(
                post(
                    PAGE,
                    {
                        "p": p,
                        "from": day.isoformat(),
                        "to": (day + timedelta(days=1)).isoformat(),
                        "n": 100,
                        "after": None,
                    },
                )
                for p, day in batch
            )
        )
        for (p, _), body in zip(batch, bodies, strict=True):
            page = (body.get("data") or {}).get("appointments") or {"edges": []}
            served[p] |= {
                e["node"]["patient"]["id"]
                for e in page["edges"]
                if e["node"]["patient"] and e["node"]["patient"].get("lastName")
            }
        if "KEY_QUARANTINED" in codes:
            return


# -- the whole run ---------------------------------------------------------------------------------


def simulation_start() -> datetime:
    """Midnight (UTC) of the seeded data's reference day: "today" for the data, day 0 here."""
    return datetime.combine(reference_date_for(2020), datetime.min.time(), UTC)


def prepare(size: str, directory: Path = DATA) -> tuple[Path, dict[str, Any], datetime]:
    """The seeded data set (once per size), its keys and the instant the simulation starts."""
    directory.mkdir(parents=True, exist_ok=True)
    path, keys_file = directory / f"extraction-{size}.db", directory / f"extraction-{size}-keys.json"
    start = simulation_start()
    kept = path.exists() and keys_file.exists()
    if not kept:
        for stale in (path, keys_file):
            stale.unlink(missing_ok=True)
    engine = make_sync_engine(f"sqlite:///{path}")
    upgrade(engine)  # a kept data set, seeded under older migrations, is brought up to the code's schema
    if not kept:
        print(f"seeding {size} (once)...", file=sys.stderr, flush=True)
        seed(engine, size, keys_file=keys_file, reference_date=start.date(), progress=False)
    engine.dispose()
    return path, json.loads(keys_file.read_text()), start


async def run_all(size: str, days: int, directory: Path = DATA) -> list[ScenarioResult]:
    """Every scenario on SQLite, in process (the PostgreSQL one runs its own server and workers)."""
    template, keys, start = prepare(size, directory)
    results = []
    with tempfile.TemporaryDirectory(prefix="extraction-") as work:
        for name in PROFILES:
            results.append(await legitimate(template, Path(work), start, keys, name, days))
            print(f"  {name}: done", file=sys.stderr, flush=True)
        for name in ATTACKS:
            results.append(await attack(template, Path(work), start, keys, name, days))
            print(f"  {name}: done", file=sys.stderr, flush=True)
    return results


def check(results: list[ScenarioResult]) -> list[str]:
    """The issue's "Done when", each failed one as a sentence (empty: all hold)."""
    failed = []
    by_name = {r.name: r for r in results}
    legit = [r for r in results if r.kind == "legitimate"]
    attacks = [r for r in results if r.kind == "attack"]
    busiest = max((r.busiest_day for r in legit), default=0)
    for r in results:
        if r.outside_horizon:
            failed.append(f"{r.name}: {r.outside_horizon} patients obtained outside the horizon")
        if not r.exposure_matches:
            failed.append(f"{r.name}: the exposure report differs from what was sent {r.extra['exposure']}")
    for r in legit:
        if r.refusals or r.alerts:
            failed.append(f"{r.name}: {r.refusals} refusals ({r.extra['codes']}) and {r.alerts} alerts")
    for r in attacks:
        if r.first_warning_count is None or r.first_warning_count >= 2 * busiest:
            failed.append(
                f"{r.name}: first warning at {r.first_warning_count} patients, "
                f"busiest legitimate practice-day {busiest}"
            )
        if r.stopped_by.startswith("refusal") and not (
            {"quarantine"} <= r.webhook and r.webhook & {"warning", "refusal"}
        ):
            failed.append(f"{r.name}: the webhook received {sorted(r.webhook)}")
        if r.extra.get("over limit"):
            failed.append(f"{r.name}: {r.extra['over limit']} patients recorded over a limit")
    plain, inflated = by_name.get("paging every practice"), by_name.get("book-and-cancel inflation")
    if plain and inflated:
        a, b = plain.identity | plain.contact, inflated.identity | inflated.contact
        if len(a ^ b) > 0.01 * len(a):
            failed.append(
                "book-and-cancel inflation changed what was obtained: "
                f"{len(b - a)} more, {len(a - b)} fewer of {len(a)}"
            )
        if "churn" not in inflated.webhook:
            failed.append("book-and-cancel inflation raised no churn alert")
    return failed


def render(results: list[ScenarioResult]) -> str:
    rows = [r.row() for r in results]
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="medium", choices=["small", "scenarios", "medium", "large"])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--no-postgres", action="store_true", help="skip the two-worker PostgreSQL scenario")
    parser.add_argument("--out", type=Path, default=RESULTS / "extraction.md")
    args = parser.parse_args()
    started = time.perf_counter()
    results = asyncio.run(run_all(args.size, args.days))
    if not args.no_postgres:
        results.append(concurrency_on_postgresql(args.size, simulation_start()))
    table = render(results)
    failed = check(results)
    verdict = "\n".join(f"- FAILED: {f}" for f in failed) or '- every condition of issue 13\'s "Done when" holds'
    seconds = round(time.perf_counter() - started)
    report = (
        f"`python -m bench.extraction --size {args.size} --days {args.days}` ({seconds} s)\n\n{table}\n\n{verdict}\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(
        json.dumps([{**r.row(), "extra": r.extra} for r in results], indent=2, default=str, ensure_ascii=False) + "\n"
    )
    print(report)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
