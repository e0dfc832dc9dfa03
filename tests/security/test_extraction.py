"""The 2020 scenario and its variants: a key pages through a practice's whole file, inflates its
limit by booking and cancelling, or stays just under the daily limit for a month. Each must be
stopped early, warned of before, alerted and the key quarantined, while a partner's normal daily
work is never refused nor alerted. Time passes through the guard's `now`, never by waiting."""

import random
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from api.data.models import (
    AccessRecord,
    AlertKind,
    Appointment,
    AppointmentStatus,
    ExtractionAlert,
    Gender,
    Grant,
    KeyMode,
    Partner,
    PartnerKey,
    Patient,
    PatientDisclosure,
    Practice,
    PracticeMembership,
    Practitioner,
)
from api.errors import ApiError
from api.ids import new_public_id
from api.operators import accounts as operators
from api.protection.extraction import ExtractionGuard
from api.scopes import Scope
from api.settings import Settings
from api.timeutil import utcnow

PATIENTS, APPOINTMENTS, SPAN_DAYS = 1000, 3000, 180
PAGE = """query($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!, $after: String) {
  appointments(practiceId: $p, from: $from, to: $to, first: $n, after: $after) {
    edges { node { startsAt patient { id firstName lastName phone email } } }
    pageInfo { hasNextPage endCursor } } }"""


@pytest.fixture
def big_practice(sync_engine, world) -> str:
    """A practice with 1,000 patients and 3,000 appointments over a year around today."""
    rng = random.Random(2020)
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    with Session(sync_engine) as session, session.begin():
        practice = Practice(name="Grand Cabinet", address="2 avenue du Port, Marseille")
        doctor = Practitioner(first_name="Inès", last_name="Roux", specialty="pédiatre", rpps="10000000099")
        session.add_all([practice, doctor])
        session.flush()
        session.add(PracticeMembership(practice_id=practice.id, practitioner_id=doctor.id))
        patient_ids = [
            session.execute(
                insert(Patient).values(
                    public_id=new_public_id("Patient"), practice_id=practice.id, first_name=f"P{i}", last_name=f"N{i}",
                    gender=Gender.UNKNOWN, phone=f"+33700{i:06d}", email=f"p{i}@example.fr", created_at=now,
                ).returning(Patient.id)
            ).scalar_one()
            for i in range(PATIENTS)
        ]
        rows = []
        for i in range(APPOINTMENTS):
            start = now + timedelta(minutes=15 * rng.randrange(-SPAN_DAYS * 96, SPAN_DAYS * 96))
            rows.append(dict(
                public_id=new_public_id("Appointment"), practice_id=practice.id, practitioner_id=doctor.id,
                patient_id=rng.choice(patient_ids), starts_at=start, ends_at=start + timedelta(minutes=15),
                created_at=now, updated_at=now, change_seq=1000 + i, reason=f"Motif {i % 7}",
            ))
        session.execute(insert(Appointment), rows)
        for partner in ("extractor", "daily-sync"):
            operators.create_partner(session, partner)
            world.keys[partner] = operators.issue_partner_key(session, partner, mode=KeyMode.OPEN).token
            operators.grant_practice(session, partner, "Grand Cabinet", set(Scope))
        # The extractor may read history: this file tests the distinct-patient limit on its own
        # (tests/security/test_reading_horizon.py tests the horizon).
        operators.allow_history(session, "extractor", "Grand Cabinet", now + timedelta(days=1))
        return practice.public_id


# The medical reasons alone: the patient never selected.
REASONS = """query($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!, $after: String) {
  appointments(practiceId: $p, from: $from, to: $to, first: $n, after: $after) {
    edges { node { id startsAt reason } } pageInfo { hasNextPage endCursor } } }"""


def page_variables(practice_id, start, end, page_size, after=None) -> dict:
    """PAGE's variables: one page of the appointments starting in [start, end)."""
    return {"p": practice_id, "from": start.isoformat(), "to": end.isoformat(), "n": page_size, "after": after}


async def read_window(api, key, practice_id, start, end, page_size=50):
    """All pages of a window; returns (patient ids seen, refusal code or None)."""
    seen, after = set(), None
    while True:
        response = await api.query(key, PAGE, page_variables(practice_id, start, end, page_size, after))
        if response.errors:
            return seen, sorted(response.codes)[0]
        page = response.data["appointments"]
        seen |= {edge["node"]["patient"]["id"] for edge in page["edges"]}
        if not page["pageInfo"]["hasNextPage"]:
            return seen, None
        after = page["pageInfo"]["endCursor"]


def appointment_row(practice, doctor, patient, starts, minutes, now, seq, **more) -> dict:
    """An `appointments` row for a bulk insert: `minutes` long, created `now`, change number `seq`."""
    return dict(
        public_id=new_public_id("Appointment"), practice_id=practice, practitioner_id=doctor, patient_id=patient,
        starts_at=starts, ends_at=starts + timedelta(minutes=minutes), created_at=now, updated_at=now,
        change_seq=seq, **more,
    )


def _alerts(sync_engine, kind: AlertKind | None = None) -> list[ExtractionAlert]:
    with Session(sync_engine) as session:
        query = select(ExtractionAlert).order_by(ExtractionAlert.id)
        return list(session.scalars(query.where(ExtractionAlert.kind == kind) if kind else query))


async def quarantine_by_reading(make_api, world, big_practice, sync_engine, limit: int, page_size: int):
    """Sets every grant's distinct-patient limit to `limit`, has the extractor read the next 30 days
    of the big practice until refused, checks the key is quarantined since; returns the client."""
    with Session(sync_engine) as session, session.begin():
        session.execute(update(Grant).values(max_patients_per_window=limit))
    api = make_api()
    _, refusal = await read_window(
        api, world.keys["extractor"], big_practice, utcnow(), utcnow() + timedelta(days=30), page_size
    )
    assert refusal == "EXTRACTION_LIMIT_EXCEEDED"
    quarantined = await api.query(world.keys["extractor"], "{ viewer { name } }")
    assert (quarantined.status, quarantined.codes) == (403, {"KEY_QUARANTINED"})
    return api


def _ids(sync_engine, partner: str, practice: str = "Grand Cabinet") -> tuple[int, int, int, list[int]]:
    """Internal ids: partner, its key, the practice, the practice's patients."""
    with Session(sync_engine) as session:
        partner_row = operators.find_partner(session, partner)
        key = session.scalar(select(PartnerKey.id).where(PartnerKey.partner_id == partner_row.id))
        practice_row = operators.find_practice(session, practice)
        patients = list(
            session.scalars(select(Patient.id).where(Patient.practice_id == practice_row.id).order_by(Patient.id))
        )
        return partner_row.id, key, practice_row.id, patients


async def test_paging_through_the_whole_file_is_stopped_early_warned_and_the_key_quarantined(
    make_api, world, big_practice, sync_engine
):
    api = make_api(budget_capacity=10**6, budget_refill_per_second=10**4)  # isolate the extraction defence
    start, obtained, refusal = utcnow() - timedelta(days=SPAN_DAYS), set(), None
    while refusal is None and start < utcnow() + timedelta(days=SPAN_DAYS):
        # Small pages: the most a refusal-aware extractor can get before the limit.
        seen, refusal = await read_window(
            api, world.keys["extractor"], big_practice, start, start + timedelta(days=31), 10
        )
        obtained |= seen
        start += timedelta(days=31)
    assert refusal == "EXTRACTION_LIMIT_EXCEEDED"
    print(f"\nextraction stopped after {len(obtained)} distinct patients of {PATIENTS}")
    assert len(obtained) <= PATIENTS // 5
    (refused,) = _alerts(sync_engine, AlertKind.REFUSAL)
    assert (
        refused.window_hours == 24
        and refused.patients_in_window <= refused.threshold < refused.patients_in_window + refused.patients_refused
    )
    warnings = _alerts(sync_engine, AlertKind.WARNING)
    assert [w.fraction for w in warnings] == [0.5, 0.8]  # each once, before the refusal
    assert all(w.raised_at <= refused.raised_at for w in warnings)
    assert len(_alerts(sync_engine, AlertKind.QUARANTINE)) == 1
    # From now on the key is refused outright, with its own code, even for what it read already.
    again = await api.query(
        world.keys["extractor"], PAGE, page_variables(big_practice, utcnow(), utcnow() + timedelta(days=1), 1)
    )
    assert (again.status, again.codes) == (403, {"KEY_QUARANTINED"})


async def test_a_refusal_reveals_neither_the_limit_nor_the_headroom(make_api, world, big_practice, sync_engine):
    api = await quarantine_by_reading(make_api, world, big_practice, sync_engine, limit=37, page_size=50)
    (refused,) = _alerts(sync_engine, AlertKind.REFUSAL)
    assert refused.threshold == 37  # the figures are the operator's
    # What the client was told, in the refusing response.
    with Session(sync_engine) as session, session.begin():
        session.execute(update(PartnerKey).values(quarantined_at=None))
        operators.set_quarantine_on_refusal(session, "extractor", False)
    after = None
    while True:
        window = (utcnow(), utcnow() + timedelta(days=30))
        page = await api.query(world.keys["extractor"], PAGE, page_variables(big_practice, *window, 50, after))
        if page.errors:
            break
        after = page.data["appointments"]["pageInfo"]["endCursor"]
    error = next(e for e in page.errors if e["extensions"]["code"] == "EXTRACTION_LIMIT_EXCEEDED")
    assert not any(ch.isdigit() for ch in error["message"])
    assert (
        set(error["extensions"]) <= {"code", "quarantined", "requestId"} and error["extensions"]["quarantined"] is False
    )


async def test_a_refused_practice_is_one_error_and_the_status_the_readme_states(
    make_api, world, big_practice, sync_engine
):
    """A page of 50 appointments whose patients the budget refuses carries one refusal, not 50, and
    is served (HTTP 200: the appointments' times are data); its patients are null."""
    with Session(sync_engine) as session, session.begin():
        session.execute(update(Grant).values(max_patients_per_window=1))
        operators.set_quarantine_on_refusal(session, "extractor", False)
    api = make_api()
    window = (utcnow(), utcnow() + timedelta(days=30))
    page = PAGE.replace("node { startsAt", "node { id startsAt")
    response = await api.query(world.keys["extractor"], page, page_variables(big_practice, *window, 50))
    edges = response.data["appointments"]["edges"]
    assert len(edges) == 50 and all(edge["node"]["patient"] is None for edge in edges)
    # One error, and no other for the patients it left null (they exist: not NOT_FOUND).
    assert [e["extensions"]["code"] for e in response.errors] == ["EXTRACTION_LIMIT_EXCEEDED"]
    assert response.status == 200
    # The same through `nodes`: one refusal, the other patients null.
    patients_query = "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Appointment { patient { id } } } }"
    several = await api.query(world.keys["extractor"], patients_query, {"ids": [e["node"]["id"] for e in edges[:5]]})
    assert [e["extensions"]["code"] for e in several.errors] == ["EXTRACTION_LIMIT_EXCEEDED"]
    assert [node["patient"] for node in several.data["nodes"]] == [None] * 5


async def test_a_refusal_after_a_forbidden_field_is_recorded_as_the_refusal(make_api, world, big_practice, sync_engine):
    """The ledger, /metrics and the logs count the refusal operators watch, though a field the grant
    forbids came first in the answer (they counted a FORBIDDEN, and no refusal)."""
    with Session(sync_engine) as session, session.begin():
        operators.change_grant(session, "extractor", "Grand Cabinet", scopes=set(Scope) - {Scope.APPOINTMENTS_REASON})
        session.execute(update(Grant).values(max_patients_per_window=1))
    counted = {"partner": "extractor"}
    refusals_before = REGISTRY.get_sample_value("partner_api_extraction_alerts_total", counted) or 0
    page = PAGE.replace("node { startsAt", "node { reason startsAt")
    window = (utcnow(), utcnow() + timedelta(days=30))
    response = await make_api().query(world.keys["extractor"], page, page_variables(big_practice, *window, 50))
    codes = [error["extensions"]["code"] for error in response.errors]
    assert codes[0] == "FORBIDDEN" and "EXTRACTION_LIMIT_EXCEEDED" in codes
    with Session(sync_engine) as session:
        partner_id = session.scalar(select(Partner.id).where(Partner.name == "extractor"))
        last = session.scalars(
            select(AccessRecord).where(AccessRecord.partner_id == partner_id).order_by(AccessRecord.id.desc())
        ).first()
    assert last is not None and last.error_code == "EXTRACTION_LIMIT_EXCEEDED"
    assert REGISTRY.get_sample_value("partner_api_extraction_alerts_total", counted) == refusals_before + 1


def _other_keys(sync_engine, *labels: str) -> dict[str, str]:
    """New open keys of the extractor, by label."""
    with Session(sync_engine) as session, session.begin():
        return {
            label: operators.issue_partner_key(session, "extractor", label=label, mode=KeyMode.OPEN).token
            for label in labels
        }


def _patients(response) -> set[str]:
    return {edge["node"]["patient"]["id"] for edge in response.data["appointments"]["edges"] if edge["node"]["patient"]}


async def test_a_refusal_quarantines_the_keys_shown_half_the_limit_not_only_the_last_to_read(
    make_api, world, big_practice, sync_engine
):
    """A thief with another key of the partner read just under the limit; the partner's own key, under
    half of it, was refused at its next page and quarantined alone, and the thief's read on (outside
    review, helper 49). Every key shown half the limit in the window is quarantined with the refused
    one, each alert with its own figures; a key shown fewer, only times, or nothing there, is not."""
    with Session(sync_engine) as session, session.begin():
        session.execute(update(Grant).values(max_patients_per_window=100))
    keys = _other_keys(sync_engine, "stolen", "a few", "times only", "elsewhere")
    api = make_api(budget_capacity=10**6, budget_refill_per_second=10**4)
    months = [(utcnow() + timedelta(days=30 * m), utcnow() + timedelta(days=30 * (m + 1))) for m in range(3)]
    production = await api.query(world.keys["extractor"], PAGE, page_variables(big_practice, *months[0], 42))
    few = await api.query(keys["a few"], PAGE, page_variables(big_practice, *months[0], 3))
    stolen = await api.query(keys["stolen"], PAGE, page_variables(big_practice, *months[1], 52))
    assert production.errors == few.errors == stolen.errors == []
    assert len(_patients(production)) < 50 <= len(_patients(stolen)) < 100 - len(_patients(production))
    times = PAGE.replace("patient { id firstName lastName phone email }", "")
    assert (await api.query(keys["times only"], times, page_variables(big_practice, *months[1], 100))).errors == []
    refused = await api.query(world.keys["extractor"], PAGE, page_variables(big_practice, *months[2], 30))
    assert "EXTRACTION_LIMIT_EXCEEDED" in refused.codes
    viewer = "{ viewer { name } }"
    for key in (keys["stolen"], world.keys["extractor"]):
        assert (await api.query(key, viewer)).codes == {"KEY_QUARANTINED"}
    for key in (keys["a few"], keys["times only"], keys["elsewhere"]):
        assert (await api.query(key, viewer)).errors == []
    with Session(sync_engine) as session:
        evidence = {
            prefix: (alert.patients_in_window, alert.patients_refused)
            for prefix, alert in session.execute(
                select(PartnerKey.prefix, ExtractionAlert)
                .join(ExtractionAlert, ExtractionAlert.key_id == PartnerKey.id)
                .where(ExtractionAlert.kind == AlertKind.QUARANTINE)
            )
        }  # fmt: skip
    assert set(evidence) == {token.split("_")[1] for token in (keys["stolen"], world.keys["extractor"])}
    assert evidence[keys["stolen"].split("_")[1]] == (len(_patients(stolen)), 0)  # its own figures


async def test_a_small_refused_request_does_not_take_down_a_key_under_half_the_limit(
    make_api, world, big_practice, sync_engine
):
    """Measured against the refused key's own reads, any key's small request over the limit took
    down the key that had read most (helper 51): the threshold is half the limit, which no request moves."""
    with Session(sync_engine) as session, session.begin():
        session.execute(update(Grant).values(max_patients_per_window=100))
    keys = _other_keys(sync_engine, "stolen")
    api = make_api(budget_capacity=10**6, budget_refill_per_second=10**4)
    months = [(utcnow() + timedelta(days=30 * m), utcnow() + timedelta(days=30 * (m + 1))) for m in range(3)]
    production = await api.query(world.keys["extractor"], PAGE, page_variables(big_practice, *months[0], 46))
    assert production.errors == [] and len(_patients(production)) < 50
    filler = await api.query(keys["stolen"], PAGE, page_variables(big_practice, *months[1], 45))
    assert filler.errors == [] and len(_patients(filler)) < 50
    stolen = await api.query(keys["stolen"], PAGE, page_variables(big_practice, *months[2], 20))
    assert "EXTRACTION_LIMIT_EXCEEDED" in stolen.codes
    assert (await api.query(keys["stolen"], "{ viewer { name } }")).codes == {"KEY_QUARANTINED"}
    assert (await api.query(world.keys["extractor"], "{ viewer { name } }")).errors == []


async def test_a_practice_smaller_than_the_floor_is_not_read_whole_without_a_warning(
    async_engine, sync_engine, world, big_practice
):
    partner, key, practice, patients = _ids(sync_engine, "extractor")
    guard, now = ExtractionGuard(Settings()), utcnow()
    async with AsyncSession(async_engine) as session:
        day, _ = await guard.budgets(session, partner, practice, now)
        await guard.admit(session, partner, key, practice, patients[: day.limit // 2 + 1], now)
    assert [w.fraction for w in _alerts(sync_engine, AlertKind.WARNING)] == [0.5]


async def test_staying_just_under_the_daily_limit_for_30_days_is_stopped_by_the_30_day_budget(
    async_engine, sync_engine, world, big_practice
):
    partner, key, practice, patients = _ids(sync_engine, "extractor")
    guard, start = ExtractionGuard(Settings()), utcnow()
    obtained, refused_on = 0, None
    async with AsyncSession(async_engine) as session:
        day, month = await guard.budgets(session, partner, practice, start)
        assert month.limit < PATIENTS  # else this practice is too small to show anything
        for n in range(30):
            now = start + timedelta(days=n, minutes=n)  # a day and a minute after the day before
            day, month = await guard.budgets(session, partner, practice, now)  # the baseline follows the days
            batch = patients[obtained : obtained + day.limit - 1]  # one under the daily limit, every day
            try:
                await guard.admit(session, partner, key, practice, batch, now)
            except ApiError as error:
                assert error.extensions["code"] == "EXTRACTION_LIMIT_EXCEEDED"
                refused_on = n
                break
            obtained += len(batch)
    assert refused_on is not None and obtained <= month.limit
    print(f"\njust under {day.limit}/day: stopped on day {refused_on + 1} after {obtained} of {PATIENTS} patients")
    kinds = {(a.kind, a.window_hours) for a in _alerts(sync_engine)}
    assert {(AlertKind.WARNING, 30 * 24), (AlertKind.REFUSAL, 30 * 24), (AlertKind.QUARANTINE, 30 * 24)} <= kinds


async def test_booking_and_cancelling_does_not_raise_the_limit(async_engine, sync_engine, world, big_practice):
    """The 2020 variant: 400 one-minute bookings of invented patients in the coming week, cancelled
    (or not): the practice's baseline counts only the appointments it made itself."""
    partner, _key, practice, _ = _ids(sync_engine, "extractor")
    settings, now = Settings(), utcnow()
    async with AsyncSession(async_engine) as session:
        before = await ExtractionGuard(settings).budgets(session, partner, practice, now)
        await session.rollback()  # not stored: measured again below, at the same time
    with Session(sync_engine) as session, session.begin():
        doctor = session.scalar(
            select(PracticeMembership.practitioner_id).where(PracticeMembership.practice_id == practice)
        )
        invented = [
            session.execute(
                insert(Patient)
                .values(
                    public_id=new_public_id("Patient"),
                    practice_id=practice,
                    first_name="X",
                    last_name=f"Inventé{i}",
                    gender=Gender.UNKNOWN,
                    created_at=now,
                )
                .returning(Patient.id)
            ).scalar_one()
            for i in range(400)
        ]
        session.execute(
            insert(Appointment),
            [
                appointment_row(
                    practice, doctor, p, now + timedelta(days=1, minutes=i), 1, now, 10**6 + i,
                    status=AppointmentStatus.CANCELLED if i % 2 else AppointmentStatus.BOOKED,
                    source_partner_id=partner,
                )
                for i, p in enumerate(invented)
            ],
        )
    async with AsyncSession(async_engine) as session:
        after = await ExtractionGuard(settings).budgets(session, partner, practice, now)
    assert [b.limit for b in after] == [b.limit for b in before]


async def test_the_baseline_is_computed_at_most_daily_and_grows_slowly(async_engine, sync_engine, world, big_practice):
    partner, _, practice, patients = _ids(sync_engine, "extractor")
    settings = Settings(extraction_floor=1, extraction_activity_factor=1.0, extraction_daily_cap=10**6)
    guard, now = ExtractionGuard(settings), utcnow()
    async with AsyncSession(async_engine) as session:
        first, _ = await guard.budgets(session, partner, practice, now)
        await session.commit()
    with Session(sync_engine) as session, session.begin():  # the practice's own activity triples
        doctor = session.scalar(
            select(PracticeMembership.practitioner_id).where(PracticeMembership.practice_id == practice)
        )
        session.execute(
            insert(Appointment),
            [
                appointment_row(
                    practice, doctor, patients[i % PATIENTS], now + timedelta(days=7 * w - 27, minutes=10 * i), 5, now,
                    2 * 10**6 + 1000 * w + i,
                )
                for w in range(6)
                for i in range(2 * first.limit)
            ],
        )
    async with AsyncSession(async_engine) as session:
        same_day, _ = await guard.budgets(session, partner, practice, now + timedelta(hours=23))
        next_day, _ = await guard.budgets(session, partner, practice, now + timedelta(hours=25))
        await session.commit()
    assert same_day.limit == first.limit
    assert next_day.limit == int(-(-first.limit * 1.25 // 1))


async def test_a_partner_churning_its_own_bookings_is_alerted(make_api, world, sync_engine):
    from tests.services.test_writes_and_sync import BOOK, CANCEL, FREE, booking

    api = make_api(extraction_churn_cancellations=3)
    for i in range(3):
        booked = await api.query(world.keys["full"], BOOK, {"input": booking(world, FREE + timedelta(minutes=30 * i))})
        appointment = booked.data["bookAppointment"]["appointment"]["id"]
        assert (await api.query(world.keys["full"], CANCEL, {"id": appointment})).errors == []
    (churn,) = _alerts(sync_engine, AlertKind.CHURN)
    assert (churn.patients_in_window, churn.threshold) == (3, 3)


async def test_a_quarantined_key_is_served_again_once_released(make_api, world, big_practice, sync_engine, cli):
    api = await quarantine_by_reading(make_api, world, big_practice, sync_engine, limit=5, page_size=10)
    prefix = world.keys["extractor"].split("_")[1]
    assert "quarantined" in cli("key", "list", "extractor").output
    assert cli("key", "release", prefix).exit_code == 0
    assert (await api.query(world.keys["extractor"], "{ viewer { name } }")).errors == []
    assert cli("key", "release", prefix).exit_code == 1  # not quarantined any more
    # Another partner's key is untouched, and one whose partner is set not to quarantine is only refused.
    assert cli("partner", "quarantine", "daily-sync", "--off").exit_code == 0
    with Session(sync_engine) as session:
        assert session.scalar(select(Partner.quarantine_on_refusal).where(Partner.name == "daily-sync")) is False


async def test_a_quarantined_key_that_is_also_revoked_gets_the_one_answer_for_every_failure(
    make_api, world, sync_engine
):
    with Session(sync_engine) as session, session.begin():
        session.execute(update(PartnerKey).values(quarantined_at=utcnow()))
    api = make_api()
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).codes == {"KEY_QUARANTINED"}
    with Session(sync_engine) as session, session.begin():
        operators.revoke_key(session, world.keys["full"].split("_")[1])
    revoked = await api.query(world.keys["full"], "{ viewer { name } }")
    wrong_secret = await api.query(world.keys["other"][:-4] + "AAAA", "{ viewer { name } }")

    def without_request_id(response):
        return [
            {**e, "extensions": {k: v for k, v in e["extensions"].items() if k != "requestId"}} for e in response.errors
        ]

    assert revoked.status == wrong_secret.status == 401
    assert without_request_id(revoked) == without_request_id(wrong_secret)


async def test_reminders_for_the_next_two_days_every_hour_are_never_refused_nor_alerted(
    make_api, world, big_practice, sync_engine
):
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    # A reminder service: the next two days, every hour of a working day (the budget refill compressed).
    api = make_api(budget_refill_per_second=10**4)
    for _ in range(10):
        _, refusal = await read_window(api, world.keys["daily-sync"], big_practice, today, today + timedelta(days=3))
        assert refusal is None
    assert _alerts(sync_engine) == []


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_both_windows_are_counted_through_their_index(async_engine, sync_engine, world, big_practice):
    partner, _, practice, _ = _ids(sync_engine, "extractor")
    async with AsyncSession(async_engine) as session:
        budgets = await ExtractionGuard(Settings()).budgets(session, partner, practice, utcnow())
        await session.commit()
    with sync_engine.connect() as connection:
        connection.exec_driver_sql("SET enable_seqscan = off")
        for budget in budgets:
            count = select(func.count()).where(
                PatientDisclosure.partner_id == partner,
                PatientDisclosure.practice_id == practice,
                budget.first_at >= utcnow() - budget.window,
            )
            sql = str(count.compile(sync_engine, compile_kwargs={"literal_binds": True}))
            plan = "\n".join(connection.exec_driver_sql("EXPLAIN " + sql).scalars())
            assert "Index" in plan and "Seq Scan" not in plan, plan
            # Its own index, whose key ends with the window's column: the count is one range scan.
            # (Which index the planner takes on a near-empty table is its choice.)
            keys = {tuple(c.name for c in ix.columns) for ix in PatientDisclosure.__table__.indexes}
            assert ("partner_id", "practice_id", budget.first_at.key) in keys


async def _limit_one_and_two_appointments(world, sync_engine, api) -> tuple[str, str]:
    """Budgets of one patient per practice, the one at A spent; an appointment of another patient at
    A and one at B, both booked."""
    with Session(sync_engine) as session, session.begin():
        operators.grant_practice(session, "full", "B", set(Scope))
        session.execute(update(Grant).where(Grant.revoked_at.is_(None)).values(max_patients_per_window=1))
    first_at_a = await api.query(
        world.keys["full"],
        "query($id: ID!) { node(id: $id) { ... on Patient { firstName } } }",
        {"id": world.patients["A"][0]},
    )
    assert first_at_a.errors == []  # the one patient the budget at A allows
    with Session(sync_engine) as session:
        a, b = (
            session.scalar(
                select(Appointment.public_id)
                .join(Patient)
                .where(
                    Patient.practice_id == world.practices[name].id,
                    Patient.public_id != world.patients["A"][0],
                    Appointment.status == AppointmentStatus.BOOKED,
                )
            )
            for name in ("A", "B")
        )
    return a, b


def _contained(sync_engine, world, *appointments: str) -> None:
    """The key is quarantined with its refusal and quarantine alerts, the appointments still booked,
    and no patient of B recorded."""
    with Session(sync_engine) as session:
        key = session.scalar(select(PartnerKey).where(PartnerKey.prefix == world.keys["full"].split("_")[1]))
        statuses = set(session.scalars(select(Appointment.status).where(Appointment.public_id.in_(appointments))))
        disclosed_at_b = session.scalar(
            select(func.count())
            .select_from(PatientDisclosure)
            .where(PatientDisclosure.practice_id == world.practices["B"].id)
        )
    assert key is not None and key.quarantined_at is not None
    assert {a.kind for a in _alerts(sync_engine)} >= {AlertKind.REFUSAL, AlertKind.QUARANTINE}
    assert statuses == {AppointmentStatus.BOOKED} and disclosed_at_b == 0


async def test_a_key_quarantined_by_one_mutation_reads_and_writes_nothing_more_in_the_same_document(
    make_api, world, sync_engine
):
    api = make_api()
    a, b = await _limit_one_and_two_appointments(world, sync_engine, api)
    document = """mutation($a: ID!, $b: ID!) {
      m1: cancelAppointment(appointmentId: $a) {
        ... on AppointmentCancelled { appointment { id patient { id firstName } } } }
      m2: cancelAppointment(appointmentId: $b) {
        ... on AppointmentCancelled { appointment { id patient { id firstName } } } } }"""
    response = await api.query(world.keys["full"], document, {"a": a, "b": b})
    # m2 is refused before it writes; a refused document keeps no write (api/services/unit_of_work.py).
    assert response.data is None
    assert {(e["path"][0], e["extensions"]["code"]) for e in response.errors} == {
        ("m1", "EXTRACTION_LIMIT_EXCEEDED"),
        ("m2", "EXTRACTION_LIMIT_EXCEEDED"),
    }
    _contained(sync_engine, world, a, b)


async def test_a_refusal_in_a_document_that_ends_unserved_still_quarantines_the_key_and_alerts(
    make_api, world, sync_engine
):
    """A refusal inside a held write must not be undone with that write: otherwise a failing last
    mutation would let a key probe its limit again and again, unseen."""
    api = make_api()
    a, _ = await _limit_one_and_two_appointments(world, sync_engine, api)
    document = """mutation($a: ID!) {
      m1: cancelAppointment(appointmentId: $a) {
        ... on AppointmentCancelled { appointment { id patient { id firstName } } } }
      m2: cancelAppointment(appointmentId: "apt_nope") { ... on AppointmentCancelled { appointment { id } } } }"""
    response = await api.query(world.keys["full"], document, {"a": a})
    assert response.data is None
    assert ("m1", "EXTRACTION_LIMIT_EXCEEDED") in {(e["path"][0], e["extensions"]["code"]) for e in response.errors}
    _contained(sync_engine, world, a)
    again = await api.query(world.keys["full"], "{ viewer { name } }")
    assert (again.status, again.codes) == (403, {"KEY_QUARANTINED"})


async def test_patients_a_partner_created_itself_never_spend_its_distinct_patient_budget(make_api, world, sync_engine):
    """Reading back the patients it booked for takes nothing from the practice's file; were they
    counted, an extractor's invented patients would change what the budget lets through, and a
    booking service reading its own bookings would be refused."""
    from tests.services.test_writes_and_sync import BOOK, FREE, booking

    with Session(sync_engine) as session, session.begin():
        session.execute(update(Grant).values(max_patients_per_window=3))
    api = make_api(budget_refill_per_second=10**4)
    booked = []
    for i in range(6):
        new_patient = {"firstName": "Inventé", "lastName": f"N{i}", "gender": "UNKNOWN"}
        response = await api.query(world.keys["full"], BOOK, {"input": {
            **booking(world, FREE + timedelta(minutes=30 * i)), "patientId": None, "newPatient": new_patient,
        }})
        assert response.data["bookAppointment"]["__typename"] == "AppointmentBooked", response.body
        booked.append(response.data["bookAppointment"]["appointment"]["id"])
    own = "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Appointment { patient { id lastName } } } }"
    read = await api.query(world.keys["full"], own, {"ids": booked})
    assert read.errors == []
    assert sorted(node["patient"]["lastName"] for node in read.data["nodes"]) == [f"N{i}" for i in range(6)]
    with Session(sync_engine) as session:
        assert session.scalar(select(func.count()).select_from(PatientDisclosure)) == 0
    assert _alerts(sync_engine) == []


async def test_a_key_reading_back_its_own_bookings_is_not_quarantined_at_another_keys_refusal(
    make_api, world, sync_engine
):
    """Its own bookings spend nothing of the budget: counted from the ledger, a booking service that
    read them back passed half the limit, and was quarantined at another key's refusal (helper 52)."""
    from tests.security.test_budgets import PRICED, variables
    from tests.services.test_writes_and_sync import BOOK, FREE, booking

    with Session(sync_engine) as session, session.begin():
        session.execute(update(Grant).values(max_patients_per_window=2))
        other = operators.issue_partner_key(session, "full", label="other", mode=KeyMode.OPEN).token
    api = make_api(budget_refill_per_second=10**4)
    booked = []
    for i in range(4):
        new_patient = {"firstName": "Inventé", "lastName": f"N{i}", "gender": "UNKNOWN"}
        response = await api.query(world.keys["full"], BOOK, {"input": {
            **booking(world, FREE + timedelta(minutes=30 * i)), "patientId": None, "newPatient": new_patient,
        }})  # fmt: skip
        booked.append(response.data["bookAppointment"]["appointment"]["id"])
    own = "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Appointment { patient { id lastName } } } }"
    assert (await api.query(world.keys["full"], own, {"ids": booked})).errors == []
    refused = await api.query(other, PRICED, variables(world, 50))
    assert "EXTRACTION_LIMIT_EXCEEDED" in refused.codes
    assert (await api.query(other, "{ viewer { name } }")).codes == {"KEY_QUARANTINED"}
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).errors == []


async def test_a_failed_search_for_other_keys_leaves_the_refusal_and_its_quarantine_standing(
    make_api, world, big_practice, sync_engine, monkeypatch
):
    """Past the statement timeout on a huge ledger, the search rolled the refusal's alerts and the
    refused key's quarantine back with it: the key read on (helper 52)."""

    async def too_slow(*_args, **_kwargs):
        raise TimeoutError("the statement ran past its timeout")

    monkeypatch.setattr("api.protection.extraction._keys_shown_half", too_slow)
    with Session(sync_engine) as session, session.begin():
        session.execute(update(Grant).values(max_patients_per_window=20))
    api = make_api(budget_capacity=10**6, budget_refill_per_second=10**4)
    window = (utcnow(), utcnow() + timedelta(days=30))
    refused = await api.query(world.keys["extractor"], PAGE, page_variables(big_practice, *window, 50))
    assert "EXTRACTION_LIMIT_EXCEEDED" in refused.codes
    assert (await api.query(world.keys["extractor"], "{ viewer { name } }")).codes == {"KEY_QUARANTINED"}
    assert {alert.kind for alert in _alerts(sync_engine)} >= {AlertKind.REFUSAL, AlertKind.QUARANTINE}


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled-plan", "resolvers"])
async def test_paging_reasons_without_their_patients_is_refused_at_the_same_limit(
    make_api, world, big_practice, sync_engine, compiled
):
    """A reason is its patient's health data: a key with appointments:reason but neither identity nor
    contact, paging reasons alone, is refused at the practice's distinct-patient limit, alerted and
    quarantined, as when it pages the patients (it used to read every reason of the horizon)."""
    limit = 37
    with Session(sync_engine) as session, session.begin():
        session.execute(
            update(Grant).values(max_patients_per_window=limit, patients_identity=False, patients_contact=False)
        )
    api = make_api(compiled_plans=compiled)
    shown, after, refusal = [], None, None
    now = utcnow()
    window = (now, now + timedelta(days=31))
    while refusal is None:
        response = await api.query(world.keys["extractor"], REASONS, page_variables(big_practice, *window, 20, after))
        assert response.data, response.body
        page = response.data["appointments"]
        shown += [edge["node"]["id"] for edge in page["edges"] if edge["node"]["reason"] is not None]
        refusal = next((e for e in response.errors if e["extensions"]["code"] == "EXTRACTION_LIMIT_EXCEEDED"), None)
        assert refusal or page["pageInfo"]["hasNextPage"], "the whole window was read without a refusal"
        after = page["pageInfo"]["endCursor"]
    assert response.codes == {"EXTRACTION_LIMIT_EXCEEDED"} and refusal["path"][-1] == "reason"
    with Session(sync_engine) as session:
        patients = set(session.scalars(select(Appointment.patient_id).where(Appointment.public_id.in_(shown))))
        counted = session.scalar(select(func.count()).select_from(PatientDisclosure))
    # a page's new patients are admitted together or refused together
    assert limit - 20 < len(patients) == counted <= limit
    assert len(_alerts(sync_engine, AlertKind.REFUSAL)) == len(_alerts(sync_engine, AlertKind.QUARANTINE)) == 1
    quarantined = await api.query(world.keys["extractor"], "{ viewer { name } }")
    assert (quarantined.status, quarantined.codes) == (403, {"KEY_QUARANTINED"})


async def test_a_refused_patient_asked_twice_by_nodes_is_refused_not_null(make_api, world, sync_engine):
    """Built together, the same id twice was the refusal once and null once, and the null was kept: the
    answer said nothing and the ledger recorded it served (a diff review, helper 54)."""
    with Session(sync_engine) as session, session.begin():
        session.execute(update(Grant).values(max_patients_per_window=1))
    api = make_api()
    nodes = "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Patient { lastName } } }"
    patients = world.patients["A"]
    assert (await api.query(world.keys["full"], nodes, {"ids": [patients[0]]})).errors == []
    refused = await api.query(world.keys["full"], nodes, {"ids": [patients[1], patients[1]]})
    assert refused.codes == {"EXTRACTION_LIMIT_EXCEEDED"}
    with Session(sync_engine) as session:
        record = session.scalars(select(AccessRecord).order_by(AccessRecord.id.desc())).first()
    assert (record.outcome, record.error_code) == ("refused", "EXTRACTION_LIMIT_EXCEEDED")
