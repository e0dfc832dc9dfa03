"""The access ledger: every request recorded; every record a response carried, and nothing else,
with the field groups it carried; no data leaves when the ledger cannot be written."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.models import AccessRecord, Appointment, Disclosure, Patient
from api.ledger.access import FieldGroup
from tests.client import walk
from tests.ledger.rows import disclosed
from tests.world import window_args

PAGE = """query Day($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!) {
  appointments(practiceId: $p, from: $from, to: $to, first: $n) {
    edges { node { id startsAt reason patient { id firstName phone } } } } }"""


def ledger(sync_engine):
    with Session(sync_engine) as session:
        records = session.scalars(select(AccessRecord).order_by(AccessRecord.id)).all()
        disclosures = session.scalars(select(Disclosure).order_by(Disclosure.id)).all()
        appointments = {a.id: a.public_id for a in session.scalars(select(Appointment))}
        patients = {p.id: p.public_id for p in session.scalars(select(Patient))}
    return records, disclosures, appointments, patients


async def test_every_record_returned_is_in_the_ledger_and_nothing_else(api, world, sync_engine):
    response = await api.query(world.keys["no-contact"], PAGE, {"p": world.practice_id("A"), **window_args(), "n": 4})
    returned = {value for key, value in walk(response.data) if key == "id"}
    records, disclosures, appointments, patients = ledger(sync_engine)
    (record,) = records
    assert record.outcome == "served" and record.operation_name == "Day" and record.http_status == 200
    assert record.requested_cost and record.actual_cost and len(record.document_hash) == 64
    with Session(sync_engine) as session:
        named = disclosed(session)
    assert {appointments[i] for i in named.appointments} | {patients[i] for i in named.patients} == returned
    # One row per appointment, each naming its patient (the page's 4 appointments are of 3 patients):
    # a patient is on the row of its first appointment in the page, the other appointment's row has none.
    assert len(disclosures) == 4 and all(d.appointment_id for d in disclosures)
    assert {d.patient_id for d in disclosures} - {None} == set(named.patients) and len(named.patients) == 3
    # identity was selected and granted; contact was selected but forbidden; so only identity.
    assert {groups for _, groups in named.patients.values()} == {FieldGroup.PATIENT | FieldGroup.IDENTITY}
    appointment_groups = {groups for _, groups in named.appointments.values()}
    assert appointment_groups == {FieldGroup.APPOINTMENT}  # reason is forbidden without its scope


async def test_the_sync_feed_records_each_appointment_it_names(api, world, sync_engine):
    """A change's id and kind (its status) leave with it, the appointment itself unselected: which
    appointments a partner saw has an exact answer for the feed too (it used to record none)."""
    feed = "query($p: ID!) { appointmentChanges(practiceId: $p, first: 100) { edges { node { kind appointmentId } } } }"
    response = await api.query(world.keys["full"], feed, {"p": world.practice_id("A")})
    named_in_response = {edge["node"]["appointmentId"] for edge in response.data["appointmentChanges"]["edges"]}
    _, _, appointments, _ = ledger(sync_engine)
    with Session(sync_engine) as session:
        named = disclosed(session)
    assert named_in_response and {appointments[i] for i in named.appointments} == named_in_response
    assert {groups for _, groups in named.appointments.values()} == {FieldGroup.APPOINTMENT} and not named.patients


async def test_unselected_fields_are_not_recorded_as_disclosed(api, world, sync_engine):
    query = PAGE.replace("reason patient { id firstName phone }", "patient { id }")
    await api.query(world.keys["full"], query, {"p": world.practice_id("A"), **window_args(), "n": 2})
    with Session(sync_engine) as session:
        named = disclosed(session)
    assert named.patients and {groups for _, groups in named.patients.values()} == {FieldGroup.PATIENT}


async def test_refusals_are_recorded_without_disclosures(api, world, sync_engine):
    await api.query(None, "{ viewer { name } }")
    await api.query("pak_000000000000_" + "x" * 43, "{ viewer { name } }")
    await api.query(world.keys["other"], PAGE, {"p": world.practice_id("A"), **window_args(), "n": 2})
    await api.query(world.keys["full"], PAGE, {"p": world.practice_id("A"), **window_args(), "n": 500})
    records, disclosures, _, _ = ledger(sync_engine)
    assert [(r.outcome, r.error_code, r.http_status) for r in records] == [
        ("refused", "UNAUTHENTICATED", 401),
        ("refused", "UNAUTHENTICATED", 401),
        ("refused", "NOT_FOUND", 200),
        ("refused", "COST_LIMIT_EXCEEDED", 400),
    ]
    assert records[1].key_prefix == "000000000000" and records[1].partner_id is None
    assert disclosures == []


async def test_no_data_is_sent_when_the_ledger_cannot_be_written(api, world, monkeypatch):
    async def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("api.ledger.access.write", broken)
    response = await api.query(world.keys["full"], PAGE, {"p": world.practice_id("A"), **window_args(), "n": 2})
    assert response.status == 503
    assert response.data is None and response.codes == {"INTERNAL_SERVER_ERROR"}
    assert "Motif" not in str(response.body) and "pat_" not in str(response.body)
