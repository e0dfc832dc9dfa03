"""`partner-api documents add`: every document checked against the schema, the cost maximum and the
policy, registered all together or not at all."""

import json
import shutil

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.models import TrustedDocument
from api.documents import service
from api.documents.analysis import LARGEST_LIST
from api.documents.manifests import document_id_of
from api.operators.policy_release import release_policy
from api.schema.query import MAX_NODES
from authz.engine import POLICY_DIR
from tests.documents.conftest import APOLLO, CODEGEN, RELAY, ids

pytestmark = pytest.mark.usefixtures("world")

BIG = (
    "query Big($p: ID!, $f: DateTime!, $t: DateTime!, $n: Int!) { appointments(practiceId: $p, from: $f, to: $t, "
    "first: $n) { edges { node { id reason practice { name } patient { firstName lastName phone email birthDate "
    "gender } practitioner { lastName } } } } }"
)


def manifest(*texts: str) -> str:
    return json.dumps({document_id_of(text): text for text in texts})


def stored(sync_engine, partner_id=None) -> list[TrustedDocument]:
    with Session(sync_engine) as session:
        return list(session.scalars(select(TrustedDocument).order_by(TrustedDocument.id)))


@pytest.mark.parametrize("sample", [CODEGEN, RELAY, APOLLO], ids=["codegen", "relay", "apollo"])
def test_each_tools_manifest_registers_every_operation(register, sample, sync_engine):
    registered = register("full", sample)
    assert sorted(r.status for r in registered) == ["added"] * 5
    rows = {row.document_id: row for row in stored(sync_engine)}
    assert set(rows) == set(ids(sample).values())
    day = next(row for row in rows.values() if row.operation_name in ("Day", "DayQuery"))
    assert day.operation_type == "query" and day.cost == 350  # first: 50 appointments, each with its patient
    assert "Patient.phone" in day.fields.split() and "patients:contact" in day.scopes.splitlines()


def test_registering_again_changes_nothing(register):
    register("full", CODEGEN)
    assert {r.status for r in register("full", CODEGEN)} == {"unchanged"}


def test_a_document_above_the_cost_maximum_is_refused_priced_at_its_largest_page(register, sync_engine):
    with pytest.raises(service.RegistrationRefused) as refused:
        register("full", manifest(BIG))
    (problem,) = refused.value.problems
    assert f"costs up to 1100 points (lists a variable sizes counted at {LARGEST_LIST} items)" in problem
    assert "the maximum is 1000" in problem
    assert stored(sync_engine) == []
    # The same selection with a small fixed page is fine.
    assert register("full", manifest(BIG.replace("$n: Int!", "").replace("first: $n", "first: 5")))


def test_a_document_larger_than_a_request_body_is_refused(register, sync_engine):
    """One token: the token limit let 20 MB in a string literal through, parsed by each worker on its
    first use, seconds of its event loop (an outside review)."""
    huge = 'query S { practice(id: "' + "a" * 70_000 + '") { id } }'
    with pytest.raises(service.RegistrationRefused) as refused:
        register("full", manifest(huge))
    assert "larger than a request's body may be (65536 bytes)" in refused.value.problems[0]
    assert stored(sync_engine) == []


def test_a_manifest_nested_past_the_json_parser_is_refused_with_its_reason(register):
    with pytest.raises(service.RegistrationRefused, match="nested too deeply"):
        register("full", "[" * 100_000 + "]" * 100_000)


def test_a_field_no_grant_of_the_partner_allows_is_refused_naming_field_and_scope(register, sync_engine):
    with pytest.raises(service.RegistrationRefused) as refused:
        register("reader", CODEGEN)  # appointments:read only: the guide's Day reads names and phones
    problems = "\n".join(refused.value.problems)
    assert "Patient.phone needs the scope patients:contact, which none of the partner's grants holds" in problems
    assert "Patient.firstName needs the scope patients:identity" in problems
    assert stored(sync_engine) == []  # all or nothing: Me, One and Sync were fine, none was kept


def test_a_partner_without_any_live_grant_cannot_register_practice_fields(register):
    with pytest.raises(service.RegistrationRefused, match=r"Appointment\.startsAt needs the scope"):
        register("expired", manifest("query One($id: ID!) { node(id: $id) { ... on Appointment { startsAt } } }"))
    assert register("expired", manifest("query Me { viewer { name keyPrefix } }"))  # its own account


def test_an_abstract_field_is_allowed_when_some_possible_type_allows_it(register):
    # node { id }: Practice.id needs any live grant; reader's grant is one
    assert register("reader", manifest("query N($id: ID!) { node(id: $id) { id } }"))


def test_a_document_that_does_not_validate_or_holds_two_operations_is_refused(register):
    with pytest.raises(service.RegistrationRefused) as refused:
        register("full", manifest(
            "query A { viewer { nope } }", "query B { viewer { name } } query C { viewer { id } }"
        ))
    problems = "\n".join(refused.value.problems)
    assert "Cannot query field 'nope'" in problems
    assert "holds 2 operations; a registered document holds one" in problems


def test_a_hash_mismatch_registers_nothing(register, sync_engine):
    text = "query Me { viewer { name } }"
    with pytest.raises(service.RegistrationRefused, match="the id does not match its text"):
        register("full", json.dumps({document_id_of(text): text + " "}))
    assert stored(sync_engine) == []


def test_removing_a_document_keeps_its_row_and_registering_it_again_restores_it(register, sync_engine):
    register("full", CODEGEN)
    day = ids(CODEGEN)["Day"]
    with Session(sync_engine) as session, session.begin():
        service.remove(session, "full", day)
    with Session(sync_engine) as session:
        assert {row.document_id for row in service.listed(session, "full")} == set(ids(CODEGEN).values()) - {day}
        assert day not in [row.document_id for row in service.listed(session, "full")]
        assert day in [row.document_id for row in service.listed(session, "full", with_removed=True)]
    assert {r.status for r in register("full", CODEGEN) if r.row.document_id == day} == {"restored"}


def test_the_largest_list_a_variable_may_size_is_the_largest_page_and_id_list():
    assert LARGEST_LIST >= MAX_NODES


def test_the_cli_adds_lists_shows_and_removes(cli, world, tmp_path):
    sample = tmp_path / "persisted-documents.json"
    sample.write_bytes(CODEGEN.read_bytes())
    added = cli("documents", "add", "full", str(sample))
    assert added.exit_code == 0, added.output
    assert "5 document(s) registered for full" in added.output
    day = ids(CODEGEN)["Day"]
    assert day in cli("documents", "list", "full").output
    shown = cli("documents", "show", "full", day)
    assert "cost        350 (worst case)" in shown.output and "query Day(" in shown.output
    assert cli("documents", "remove", "full", day).exit_code == 0
    assert day not in cli("documents", "list", "full").output
    refused = cli("documents", "add", "reader", str(sample))
    assert refused.exit_code == 1 and "nothing was registered" in refused.output


def test_the_cli_checks_documents_against_the_policy_in_force(cli, sync_engine, tmp_path):
    """A released policy letting `appointments:read` read phones (`partner-api policy reload`): the
    server serves them, so a document reading them registers; the shipped policy is not asked."""
    phones = tmp_path / "phones.json"
    phones.write_text(manifest("query Phone($id: ID!) { node(id: $id) { ... on Appointment { patient { phone } } } }"))
    refused = cli("documents", "add", "reader", str(phones))
    assert refused.exit_code == 1 and "Patient.phone needs the scope patients:contact" in refused.output
    policy = tmp_path / "policy"
    policy.mkdir()
    for source in POLICY_DIR.glob("*.polar"):
        shutil.copy(source, policy / source.name)
    with (policy / "fields.polar").open("a") as fields:
        fields.write('\nfield_needs_scope("Patient.phone", "appointments:read");\n')
    assert release_policy(sync_engine, policy).report.ok
    added = cli("documents", "add", "reader", str(phones))
    assert added.exit_code == 0, added.output
    assert "1 document(s) registered for reader" in added.output
