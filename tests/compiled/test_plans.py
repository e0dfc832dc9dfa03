"""Which registered documents get a compiled plan, and why the others run on the general executor."""

import json

import pytest
from graphql import parse

from api.compiled.plan import Fallback, Plan, compile_plan, described
from api.documents.manifests import document_id_of
from api.schema import schema

PAGE = """query Page($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 50) {
    edges { cursor node { id startsAt reason patient { id firstName } practitioner { id lastName } } }
    pageInfo { hasNextPage endCursor } } }"""


def plan_of(text: str) -> Plan | Fallback:
    return compile_plan(schema._schema, parse(text))


def test_the_appointments_page_compiles_with_its_aliases():
    plan = plan_of(PAGE.replace("reason", "motive: reason"))
    assert isinstance(plan, Plan)
    [root] = plan.fields
    edges = next(f for f in root.children if f.key == "edges")
    node = next(f for f in edges.children if f.key == "node")
    assert [f.key for f in node.children] == ["id", "startsAt", "motive", "patient", "practitioner"]
    assert described(plan) == "compiled, read in one statement"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('query($id: ID!) { practice(id: $id) { name } }', "only a lone `appointments` root field"),
        (PAGE[:-1] + "practices(first: 1) { edges { cursor } } }", "only a lone `appointments` root field"),
        (PAGE.replace("lastName }", "lastName } again: practitioner { id }"), "Appointment.practitioner selected"),
        (PAGE.replace("reason", "practice { practitioners(first: 2) { edges { cursor } } }"),
         "Practice.practitioners is read through its resolver"),
    ],
)
def test_other_compiled_documents_are_read_through_the_resolvers_and_say_why(text, reason):
    plan = plan_of(text)
    assert isinstance(plan, Plan) and isinstance(plan.page, str) and plan.page.startswith(reason), plan
    assert described(plan) == f"compiled, read through the resolvers ({plan.page})"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("query { viewer { name } }", "root field viewer is not compiled"),
        ("query($id: ID!) { node(id: $id) { id } }", "Node is an interface or a union"),
        ("query($id: ID!) { practice(id: $id) { ...P } } fragment P on Practice { name }", "fragments or several"),
        ("query($id: ID!) { practice(id: $id) { ... on Practice { name } } }", "fragments"),
        ("query($id: ID!, $s: Boolean!) { practice(id: $id) { name @skip(if: $s) } }", "directives"),
        ("query($id: ID!) { practice(id: $id) { name name } }", "name selected twice"),
        ("query($id: ID!) { practice(id: $id) { __schema { queryType { name } } } }", "introspection"),
        ('mutation { cancelAppointment(id: "apt_x") { __typename } }', "mutations are not compiled"),
    ],
)
def test_other_documents_fall_back_and_say_why(text, reason):
    plan = plan_of(text)
    assert isinstance(plan, Fallback) and plan.reason.startswith(reason), plan
    assert described(plan) == f"general executor ({plan.reason})"


def test_documents_show_tells_how_the_document_runs(cli, world, tmp_path):
    text = "query Me { viewer { name } }"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({document_id_of(PAGE): PAGE, document_id_of(text): text}))
    added = cli("documents", "add", "full", str(path))
    assert added.exit_code == 0, added.output
    page = cli("documents", "show", "full", document_id_of(PAGE)).output
    assert "plan        compiled, read in one statement\n" in page
    shown = cli("documents", "show", "full", document_id_of(text)).output
    assert "plan        general executor (root field viewer is not compiled)" in shown
