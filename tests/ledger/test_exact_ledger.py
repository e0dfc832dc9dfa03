"""The ledger records what the response carried, not what the query selected: a field left out by
`@skip`/`@include`, or null in the data, discloses nothing; aliases and fragments disclose what
they carry. The exposure report, read from the ledger, equals what was sent per field group."""

from __future__ import annotations

import shutil
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.data.models import AccessRecord, Appointment, AppointmentStatus, Disclosure, Patient
from api.ledger.access import FieldGroup
from api.ledger.disclosure_recorder import sensitive_field_groups
from api.ledger.exposure import partner_exposure
from api.operators.policy_release import release_policy
from api.timeutil import utcnow
from authz.engine import Authorizer
from tests.ledger.rows import by_public_id
from tests.world import window_args

ROOT = Path(__file__).resolve().parents[2]
APPOINTMENT, REASON, PATIENT = FieldGroup.APPOINTMENT, FieldGroup.REASON, FieldGroup.PATIENT
IDENTITY, CONTACT = FieldGroup.IDENTITY, FieldGroup.CONTACT


def recorded(sync_engine) -> dict[str, FieldGroup]:
    """The field groups of the last request's disclosures, per appointment and patient public id."""
    with Session(sync_engine) as session:
        access_id = session.scalar(select(AccessRecord.id).order_by(AccessRecord.id.desc()).limit(1))
        return by_public_id(session, Disclosure.access_id == access_id)


async def one_page(api, world, selection: str, variables: dict | None = None, declared: str = "", fragments: str = ""):
    query = (
        f"query Page($p: ID!, $from: DateTime!, $to: DateTime!{declared}) {{"
        f" appointments(practiceId: $p, from: $from, to: $to, first: 3) {{ edges {{ node {{ {selection} }} }} }} "
        f"}} {fragments}"
    )
    response = await api.query(
        world.keys["full"], query, {"p": world.practice_id("A"), **window_args(), **(variables or {})}
    )
    assert response.status == 200 and response.errors == [], response.body
    return [edge["node"] for edge in response.data["appointments"]["edges"]]


async def test_fields_left_out_by_skip_or_include_are_not_recorded(api, world, sync_engine):
    nodes = await one_page(
        api,
        world,
        "id reason @skip(if: true) patient { id phone @skip(if: true) email @include(if: false) firstName "
        "@include(if: $identity) }",
        {"identity": False},
        declared=", $identity: Boolean!",
    )
    assert all(set(node) == {"id", "patient"} and set(node["patient"]) == {"id"} for node in nodes)
    ledger = recorded(sync_engine)
    assert {ledger[node["id"]] for node in nodes} == {APPOINTMENT}
    assert {ledger[node["patient"]["id"]] for node in nodes} == {PATIENT}


async def test_a_directive_that_keeps_a_field_records_it(api, world, sync_engine):
    nodes = await one_page(
        api,
        world,
        "id reason @include(if: $keep) patient { id phone @skip(if: false) }",
        {"keep": True},
        declared=", $keep: Boolean!",
    )
    ledger = recorded(sync_engine)
    assert {ledger[node["id"]] for node in nodes} == {APPOINTMENT | REASON}
    assert {ledger[node["patient"]["id"]] for node in nodes} == {PATIENT | CONTACT}


async def test_fields_null_in_the_data_are_not_recorded(api, world, sync_engine):
    """A patient without phone or e-mail discloses no contact; an appointment without a reason no reason."""
    with Session(sync_engine) as session, session.begin():
        session.execute(
            update(Patient).where(Patient.public_id == world.patients["A"][0]).values(phone=None, email=None)
        )
        session.execute(
            update(Appointment).where(Appointment.public_id == world.appointments["A"][0]).values(reason=None)
        )
    nodes = await one_page(api, world, "id reason patient { id phone email }")
    ledger = recorded(sync_engine)
    for node in nodes:
        has_reason = node["reason"] is not None
        assert ledger[node["id"]] == (APPOINTMENT | REASON if has_reason else APPOINTMENT), node
        patient = node["patient"]
        has_contact = patient["phone"] is not None or patient["email"] is not None
        assert ledger[patient["id"]] == (PATIENT | CONTACT if has_contact else PATIENT), node
    assert world.appointments["A"][0] in ledger and ledger[world.appointments["A"][0]] == APPOINTMENT
    assert ledger[world.patients["A"][0]] == PATIENT  # selected, null: nothing sent
    assert ledger[world.patients["A"][1]] == PATIENT | CONTACT


async def test_aliases_and_fragments_record_what_they_carry(api, world, sync_engine):
    nodes = await one_page(
        api,
        world,
        "id motive: reason patient { id ...Reach ... on Patient @skip(if: true) { firstName } }",
        fragments="fragment Reach on Patient { tel: phone }",
    )
    assert all(set(node["patient"]) == {"id", "tel"} for node in nodes)
    ledger = recorded(sync_engine)
    assert {ledger[node["id"]] for node in nodes} == {APPOINTMENT | REASON}
    assert {ledger[node["patient"]["id"]] for node in nodes} == {PATIENT | CONTACT}


async def test_a_forbidden_field_is_not_recorded(api, world, sync_engine):
    response = await api.query(
        world.keys["no-contact"],
        "query($p: ID!, $from: DateTime!, $to: DateTime!) { appointments(practiceId: $p, from: $from, to: $to, "
        "first: 2) {"
        " edges { node { id patient { id firstName phone } } } } }",
        {"p": world.practice_id("A"), **window_args()},
    )
    assert response.codes == {"FORBIDDEN"}
    patients = {edge["node"]["patient"]["id"] for edge in response.data["appointments"]["edges"]}
    assert {recorded(sync_engine)[p] for p in patients} == {PATIENT | IDENTITY}


async def test_the_exposure_report_equals_what_was_sent_per_field_group(api, world, sync_engine):
    """Several requests mixing directives, nulls, aliases and fragments: the report's groups per
    patient, and its counts per group, are those worked out from the responses alone."""
    since = utcnow() - timedelta(seconds=1)
    with Session(sync_engine) as session, session.begin():
        session.execute(
            update(Patient).where(Patient.public_id == world.patients["A"][2]).values(phone=None, email=None)
        )
    requests = [
        ("id patient { id phone @skip(if: true) email @include(if: false) }", {}),
        ("id reason @skip(if: true) patient { id name: lastName @include(if: false) contact: email }", {}),
        ("id patient { id ...Who }", {}),
    ]
    sent: dict[str, int] = defaultdict(int)
    for selection, variables in requests:
        fragments = (
            "fragment Who on Patient { birthDate @skip(if: true) firstName @include(if: true) }"
            if "Who" in selection
            else ""
        )
        for node in await one_page(api, world, selection, variables, fragments=fragments):
            patient = node["patient"]
            owner = patient["id"]
            sent[owner] |= APPOINTMENT | PATIENT | (REASON if node.get("reason") else 0)
            sent[owner] |= IDENTITY if any(patient.get(k) for k in ("firstName", "name", "birthDate")) else 0
            sent[owner] |= CONTACT if any(patient.get(k) for k in ("phone", "email", "contact")) else 0
    with Session(sync_engine) as session:
        found = partner_exposure(session, "full", since, utcnow() + timedelta(seconds=1))
    assert {p.patient_id: FieldGroup(p.field_groups) for p in found.patients} == sent
    (practice,) = found.practices
    assert practice.with_groups["identity"] == sum(1 for g in sent.values() if g & IDENTITY)
    assert practice.with_groups["contact"] == sum(1 for g in sent.values() if g & CONTACT)
    assert practice.with_groups["reason"] == 0
    assert sent[world.patients["A"][2]] == APPOINTMENT | PATIENT | IDENTITY  # its e-mail was asked for, and null


def test_history_marks_exactly_the_fields_the_policy_declares_purpose_bound():
    authorizer = Authorizer()
    groups = sensitive_field_groups(authorizer.field_scopes, authorizer.purpose_bound)
    assert authorizer.purpose_bound  # the policy declares some: the comparison below is not vacuous
    assert {field for field, mask in groups.outside.items() if mask & FieldGroup.HISTORY} == authorizer.purpose_bound
    assert not any(mask & FieldGroup.HISTORY for mask in groups.inside.values())
    # Outside the horizon a field discloses what it does inside, plus the mark.
    assert all(groups.outside[field] & ~FieldGroup.HISTORY == mask for field, mask in groups.inside.items())


async def test_a_refused_write_that_tells_an_appointments_state_records_it(api, world, sync_engine):
    # NOT_CHANGEABLE tells that the appointment is no longer booked (arrived, fulfilled, missed): it was
    # answered with no disclosure recorded. And times in the past were refused after that check, so an
    # id and any past time told it for nothing.
    missed, booked = world.appointments["A"][0], world.appointments["A"][1]
    with Session(sync_engine) as session, session.begin():
        no_show = update(Appointment).where(Appointment.public_id == missed).values(status=AppointmentStatus.NOSHOW)
        session.execute(no_show)
    past = {"startsAt": "2000-01-01T08:00:00+00:00", "endsAt": "2000-01-01T08:20:00+00:00"}
    later = {k: (utcnow() + timedelta(days=3, hours=h)).isoformat() for k, h in (("startsAt", 0), ("endsAt", 1))}
    for appointment in (missed, booked):
        refused = await api.query(world.keys["writer-only"], MOVE, {"input": {"appointmentId": appointment, **past}})
        assert refused.data["rescheduleAppointment"]["reason"] == "IN_THE_PAST"  # whatever its state
        assert recorded(sync_engine) == {}
    for write, variables in ((MOVE, {"input": {"appointmentId": missed, **later}}), (CANCEL, {"id": missed})):
        refused = await api.query(world.keys["writer-only"], write, variables)
        (answer,) = refused.data.values()
        assert answer["reason"] == "NOT_CHANGEABLE"
        assert recorded(sync_engine) == {missed: APPOINTMENT}


MOVE = """mutation M($input: RescheduleAppointmentInput!) { rescheduleAppointment(input: $input) {
  ... on WriteRefused { reason } } }"""
CANCEL = "mutation C($id: ID!) { cancelAppointment(appointmentId: $id) { ... on WriteRefused { reason } } }"


async def test_a_policy_letting_any_grant_read_phones_still_records_each_phone_as_contact(
    sync_engine, make_api, world, tmp_path
):
    # The ledger's groups came from the scope a field's rule names: a released policy that let any grant
    # read phones (it passes `policy check`) had phones recorded as the bare patient id.
    policy = tmp_path / "policy"
    shutil.copytree(ROOT / "authz", policy, ignore=shutil.ignore_patterns("*.py", "__pycache__", "policy_tests"))
    fields = policy / "fields.polar"
    loosened = fields.read_text().replace(
        'field_needs_scope("Patient.phone", "patients:contact");', 'field_with_any_grant("Patient.phone");'
    )
    assert loosened != fields.read_text()
    fields.write_text(loosened)
    assert release_policy(sync_engine, policy).report.ok
    patient = world.patients["A"][0]
    for key in ("full", "no-contact"):  # with the contact scope, and without: the policy opens it to both now
        response = await make_api().query(world.keys[key], PHONE, {"id": patient})
        assert response.data["node"]["phone"]
        assert recorded(sync_engine)[patient] == PATIENT | CONTACT


PHONE = "query P($id: ID!) { node(id: $id) { ... on Patient { phone } } }"

