"""`partner-api policy check|test|explain`, as a policy author and an operator use them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from api.operators.cli import app
from api.settings import get_settings
from authz.checking import check_policy, in_policy_terms
from authz.engine import POLAR_CLASSES, POLICY_DIR, POLICY_FILES
from authz.explain import ExplainError, explain
from authz.policy_testing import CaseError, load_cases

runner = CliRunner()
REPO = POLICY_DIR.parent
POLICY = (POLICY_DIR / "policy.polar").read_text()
FIELDS = (POLICY_DIR / "fields.polar").read_text()


def write(tmp_path: Path, text: str, name: str = "broken.polar") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def last_line(text: str) -> int:
    return len(text.splitlines())


def only_error(tmp_path: Path, text: str) -> str:
    report = check_policy([write(tmp_path, text)])
    errors = [p for p in report.problems if p.severity == "error"]
    assert not report.ok and len(errors) == 1, [str(p) for p in report.problems]
    return str(errors[0])


# ---------------------------------------------------------------------------
# policy check
# ---------------------------------------------------------------------------


def test_the_policy_of_the_repository_is_ok():
    result = runner.invoke(app, ["policy", "check"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"policy OK: \d+ rules in 2 files\n", result.output)


def test_rules_are_counted_facts_and_shorthand_rules_included(tmp_path):
    text = (
        'actor Partner {}\nresource Practice { permissions = ["read"]; roles = ["member"]; "read" if "member"; }\n'
        "has_role(_p: Partner, \"member\", _x: Practice);\n"
        "allow(p: Partner, action: String, r) if has_permission(p, action, r);  # a comment; with a semicolon\n"
    )
    report = check_policy([write(tmp_path, text)])
    assert report.ok, [str(p) for p in report.problems]
    assert report.summary == "policy OK: 3 rules in 1 file"


def test_a_syntax_error_names_file_line_and_column(tmp_path):
    message = only_error(tmp_path, "# a comment\nallow(a, b, c) if a = ;\n")
    assert message.startswith(f"{tmp_path / 'broken.polar'}:2:23: error: did not expect to find the token ';'")
    assert "allow(a, b, c) if a = ;" in message  # the line itself, to see the mistake


def test_an_unknown_class_as_specializer_is_an_error_not_a_warning(tmp_path):
    message = only_error(tmp_path, POLICY + "\nhas_scope(grant: Grnt, \"x\") if grant.id = 1;\n")
    assert "Unknown specializer Grnt" in message and f"broken.polar:{last_line(POLICY) + 2}:18:" in message


def test_an_unregistered_resource_block_is_reported(tmp_path):
    message = only_error(tmp_path, POLICY + '\nresource Invoice { permissions = ["read"]; }\n')
    assert "Unregistered class: Invoice" in message and f"broken.polar:{last_line(POLICY) + 2}:1:" in message


def test_a_singleton_variable_is_reported(tmp_path):
    message = only_error(
        tmp_path, POLICY + '\nhas_scope(grant, "x") if grant.appointments_read = true and scope = 1;\n'
    )
    assert "Singleton variable scope" in message and f"broken.polar:{last_line(POLICY) + 2}:" in message


@pytest.mark.parametrize(
    ("block_body", "expected", "lines_below_block", "at"),
    [
        pytest.param(
            'roles = ["reader"];\n    permissions = ["read"];',
            "Missing implementation for required rule has_role",
            0,
            ": error",
            id="a role declared without has_role points at its resource block",
        ),
        pytest.param(
            'permissions = ["read"];\n    "read" if "reader";',
            'Undeclared term "reader"',
            2,
            ":15: error",
            id="an undeclared term points at the term",
        ),
    ],
)
def test_a_mistake_in_a_resource_block_is_reported_where_it_stands(
    tmp_path, block_body: str, expected: str, lines_below_block: int, at: str
):
    broken = POLICY.replace('resource Patient {\n    permissions = ["read"];', "resource Patient {\n    " + block_body)
    message = only_error(tmp_path, broken)
    assert expected in message
    line = broken.splitlines().index("resource Patient {") + 1 + lines_below_block
    assert f"broken.polar:{line}{at}" in message


def test_a_typed_helper_argument_is_caught_because_its_filter_is_always_false(tmp_path):
    broken = POLICY.replace(
        'has_scope(grant, "appointments:write") if', 'has_scope(grant: Grant, "appointments:write") if'
    )
    report = check_policy([write(tmp_path, broken)])
    messages = [str(p) for p in report.problems]
    assert not report.ok
    assert any("nothing allows 'book' on Practice" in m and "typed" in m for m in messages)
    assert any("nothing allows 'cancel' on Appointment" in m for m in messages)


def test_a_misspelt_field_in_a_row_rule_is_located(tmp_path):
    broken = POLICY.replace("grant.appointments_write = true", "grant.appointment_write = true")
    line = broken.splitlines().index('has_scope(grant, "appointments:write") if grant.appointment_write = true;') + 1
    message = only_error(tmp_path, broken)
    assert message.startswith(
        f"{tmp_path / 'broken.polar'}:{line}: error: no class the policy can read has a field 'appointment_write'; "
        "did you mean appointments_write or"
    )


def test_a_misspelt_field_in_a_field_rule_is_located(tmp_path):
    policy = write(tmp_path, POLICY, "policy.polar")
    broken = FIELDS.replace(
        "field_with_any_grant(field);", "grant.apointments_read = true and field_with_any_grant(field);"
    )
    fields = write(tmp_path, broken, "fields.polar")
    (problem,) = check_policy([policy, fields]).problems
    line = next(i for i, text in enumerate(broken.splitlines(), start=1) if "apointments_read" in text)
    assert (problem.file, problem.line) == (str(fields), line)
    assert problem.message.startswith("no class the policy can read has a field 'apointments_read'")


def test_an_unknown_attribute_of_a_record_is_reported_at_its_rule(tmp_path):
    broken = POLICY.replace(
        'holds(partner, "appointments:read", appointment);',
        'holds(partner, "appointments:read", appointment) and appointment.source_partner = partner.id;',
    )
    line = next(i for i, text in enumerate(broken.splitlines(), start=1) if "appointment.source_partner " in text)
    message = only_error(tmp_path, broken)
    assert message.startswith(f"{tmp_path / 'broken.polar'}:{line}: error: no class the policy can read has a field ")
    assert "did you mean source_partner_id?" in message


def test_a_field_rule_about_a_field_the_schema_lacks_fails_check(tmp_path):
    policy = write(tmp_path, POLICY, "policy.polar")
    broken = FIELDS.replace('field_needs_scope("Patient.phone",', 'field_needs_scope("Patient.phon",')
    fields = write(tmp_path, broken, "fields.polar")
    report = check_policy([policy, fields])
    line = next(i for i, text in enumerate(broken.splitlines(), start=1) if '"Patient.phon"' in text)
    assert not report.ok
    assert [str(p) for p in report.problems] == [
        f"{fields}:{line}: error: field_needs_scope: the GraphQL schema has no field 'Patient.phon'; "
        "did you mean Patient.phone or Patient.id or Patient.gender?"
    ]


def test_an_unknown_scope_in_a_row_rule_is_reported_at_the_rule(tmp_path):
    broken = POLICY.replace(
        'holds(partner, "appointments:write", practice);', 'holds(partner, "appointments:wrte", practice);'
    )
    line = next(i for i, text in enumerate(broken.splitlines(), start=1) if "appointments:wrte" in text)
    message = only_error(tmp_path, broken)
    assert message.startswith(f"{tmp_path / 'broken.polar'}:{line}: error: unknown scope 'appointments:wrte' (known:")


def test_a_method_call_in_a_row_rule_is_explained_in_the_policy_terms(tmp_path):
    broken = POLICY.replace(
        'holds(partner, "appointments:read", appointment);',
        'holds(partner, "appointments:read", appointment) and appointment.status.lower() = "booked";',
    )
    message = only_error(tmp_path, broken)
    line = next(i for i, text in enumerate(broken.splitlines(), start=1) if ".lower()" in text)
    assert f"broken.polar:{line}:" in message
    assert "'read' on Appointment cannot be compiled to SQL: a method call: row rules become SQL" in message
    assert "unbound variable" not in message and "register_class" not in message


@pytest.mark.parametrize(
    ("oso_says", "we_say"),
    [
        (
            "Unregistered field or relation: Appointment.starts_at\n\nPlease include `starts_at` in the `fields` "
            "parameter of your `register_class` call for Appointment.",
            "Appointment has no field 'starts_at' the policy can read (id, practice_id,",
        ),
        ("Not supported: cannot call method on unbound variable _x_22", "a method call: row rules become SQL"),
    ],
)
def test_oso_advice_meant_for_its_programmers_is_said_in_the_policy_terms(oso_says, we_say):
    said = in_policy_terms(oso_says)
    assert we_say in said and "register_class" not in said and "unbound" not in said


def test_a_field_rule_with_an_unknown_scope_is_reported(tmp_path):
    policy = write(tmp_path, POLICY, "policy.polar")
    fields = write(
        tmp_path,
        FIELDS.replace('"Patient.email", "patients:contact"', '"Patient.email", "patients:contacts"'),
        "fields.polar",
    )
    report = check_policy([policy, fields])
    line = FIELDS.splitlines().index('field_needs_scope("Patient.email", "patients:contact");') + 1
    assert [str(p).split(" (known")[0] for p in report.problems] == [
        f"{fields}:{line}: error: unknown scope 'patients:contacts'"
    ]


def test_a_scope_without_has_scope_is_reported(tmp_path):
    broken = "\n".join(line for line in POLICY.splitlines() if '"appointments:reason") if' not in line)
    message = only_error(tmp_path, broken)
    assert "scope 'appointments:reason' of api/scopes.py has no has_scope rule" in message


def test_check_exits_1_and_prints_the_problems(tmp_path):
    path = write(tmp_path, "allow(a, b, c) if a = ;\n")
    result = runner.invoke(app, ["policy", "check", "--policy", str(path)])
    assert result.exit_code == 1
    assert f"{path}:1:23: error" in result.output and "policy has 1 error" in result.output


def test_check_refuses_a_missing_file_or_another_extension(tmp_path):
    report = check_policy([tmp_path / "nope.polar", write(tmp_path, "", "policy.txt")])
    assert [p.message for p in report.problems] == ["no such file", "a policy file ends in .polar"]


# ---------------------------------------------------------------------------
# policy test
# ---------------------------------------------------------------------------


def test_policy_test_runs_every_case_and_passes():
    result = runner.invoke(app, ["policy", "test"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len([line for line in lines if line.startswith("PASS  ")]) == len(load_cases())
    assert lines[-1] == f"{len(load_cases())} passed, 0 failed"


def test_a_failing_case_prints_fail_and_exits_1(tmp_path):
    cases = write(
        tmp_path,
        "- name: a reader cancels\n  grant: {scopes: [appointments:read]}\n  action: cancel\n  resource: "
        "Appointment\n  expect: allow\n",
        "cases.yaml",
    )
    result = runner.invoke(app, ["policy", "test", str(cases)])
    assert result.exit_code == 1
    assert (
        "FAIL  " in result.output
        and "cases.yaml:1  a reader cancels: cancel Appointment expected allow, got deny" in result.output
    )
    assert result.output.splitlines()[-1] == "0 passed, 1 failed"


def test_the_cases_catch_a_policy_that_forgets_revocation(tmp_path):
    forgetful = write(tmp_path, POLICY.replace("    grant.revoked_at = nil and\n", ""), "policy.polar")
    fields = write(tmp_path, FIELDS, "fields.polar")
    result = runner.invoke(app, ["policy", "test", "--policy", str(forgetful), "--policy", str(fields)])
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert failed and all("revoked" in line for line in failed)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- name: x\n  field: Patient.phone\n  expect: maybe\n", "cases.yaml:1: 'x': `expect` is allow or deny"),
        (
            "- name: x\n  grant: {scopes: [patients:phone]}\n  field: Patient.phone\n  expect: deny\n",
            "unknown scope(s)",
        ),
        (
            "- name: x\n  grant: {scopes: [], expird: true}\n  field: Patient.phone\n  expect: deny\n",
            "unknown grant key(s) expird",
        ),
        ("- name: x\n  resource: Invoice\n  expect: deny\n", "unknown resource 'Invoice'"),
        ("- name: x\n  resource: Grant\n  expect: deny\n", "a case about Grant needs a grant"),
        ("- name: x\n  field: Patient.phone\n  resource: Patient\n  expect: deny\n", "either `field"),
        ("- name: x\n  field: phone\n  expect: deny\n", "Type.field"),
        ("- field: Patient.phone\n  expect: deny\n", "needs a `name`"),
        ("- name: x\n  field: Patient.phone\n  expect: deny\n  scope: x\n", "unknown key(s) scope"),
        (
            "- name: x\n  field: A.b\n  expect: deny\n- name: x\n  field: A.c\n  expect: deny\n",
            "cases.yaml:4: the name 'x' is used already at line 1",
        ),
        ("name: x\n", "a list of cases"),
        ("- name: [x\n", "not valid YAML"),
    ],
)
def test_a_malformed_case_is_refused_with_its_file_and_line(tmp_path, text, message):
    with pytest.raises(CaseError) as error:
        load_cases([write(tmp_path, text, "cases.yaml")])
    assert message in str(error.value)


def test_a_malformed_case_file_makes_the_command_exit_1(tmp_path):
    cases = write(tmp_path, "- name: x\n  field: Patient.phone\n  expect: maybe\n", "cases.yaml")
    result = runner.invoke(app, ["policy", "test", str(cases)])
    assert result.exit_code == 1 and "`expect` is allow or deny" in result.output


# ---------------------------------------------------------------------------
# policy explain (tests/world.py: partners with every kind of grant at practice A)
# ---------------------------------------------------------------------------


def explained(sync_engine, partner: str, practice: str = "A"):
    with Session(sync_engine) as session:
        return explain(session, partner, practice)


def field(explanation, name: str):
    return next(f for f in explanation.fields if f.field == name)


def row(explanation, resource: str, action: str):
    return next(r for r in explanation.rows if (r.resource, r.action) == (resource, action))


def test_explain_names_the_rule_and_the_missing_scope(sync_engine, world):
    result = explained(sync_engine, "no-contact")
    (grant,) = result.grants
    assert grant.live and grant.scopes == ["appointments:read", "patients:identity"]
    phone = field(result, "Patient.phone")
    assert not phone.readable and phone.grant is None
    assert phone.reason.rule == 'field_needs_scope("Patient.phone", "patients:contact")'
    assert not phone.reason.satisfied and phone.reason.why == "grant lacks patients:contact"
    name = field(result, "Patient.lastName")
    assert name.readable and name.grant == grant.grant and name.reason.why == "grant has patients:identity"
    assert field(result, "Practice.name").reason.rule == 'field_with_any_grant("Practice.name")'


def test_explain_says_a_purpose_bound_field_needs_the_horizon_or_the_history_permission(sync_engine, world):
    result = explained(sync_engine, "no-contact")
    (grant,) = result.grants
    assert grant.horizon == "1 day(s) back, 30 ahead; no history permission"
    name = field(result, "Patient.lastName")
    assert name.readable and not name.readable_outside_horizon
    line = FIELDS.splitlines().index('purpose_bound("Patient.lastName");') + 1
    assert name.outside_why == (
        f'purpose_bound("Patient.lastName"): outside the reading horizon ({grant.horizon}) [fields.polar:{line}]'
    )
    status = field(result, "Appointment.status")
    assert status.readable and status.readable_outside_horizon and status.outside_why is None


def test_explain_runs_the_row_filters_on_the_practice(sync_engine, world):
    result = explained(sync_engine, "writer-only")
    (grant,) = result.grants
    cancel = row(result, "Appointment", "cancel")
    assert cancel.allowed and cancel.through == grant.grant
    assert (cancel.rows_allowed, cancel.rows_total) == (6, 6) and cancel.how.startswith("SQL filter")
    assert cancel.rules and cancel.rules[0].startswith("policy.polar:")
    read = row(result, "Appointment", "read")
    assert not read.allowed and read.through == f"not given by {grant.grant}"
    assert {(r.resource, r.action) for r in result.rows} >= {
        ("Practice", "read"),
        ("Practice", "book"),
        ("Practitioner", "read"),
        ("Patient", "read"),
        ("Appointment", "read"),
        ("Appointment", "reschedule"),
        ("Appointment", "cancel"),
    }


def test_explain_decides_in_memory_where_the_practice_has_no_row_of_a_kind(sync_engine, world):
    # The world has no deleted appointment: the same rule is run on a new one.
    reader = row(explained(sync_engine, "reader"), "DeletedAppointment", "read")
    writer = row(explained(sync_engine, "writer-only"), "DeletedAppointment", "read")
    assert reader.rows_total == 0 and reader.allowed and not writer.allowed
    assert "in memory" in reader.how


@pytest.mark.parametrize(("partner", "state"), [("revoked", "revoked at "), ("expired", "expired at ")])
def test_explain_says_why_a_grant_is_not_live(sync_engine, world, partner, state):
    result = explained(sync_engine, partner)
    (grant,) = result.grants
    assert not grant.live and grant.state.startswith(state) and grant.state.endswith(" UTC")
    assert not any(r.allowed for r in result.rows)
    assert not any(f.readable for f in result.fields)
    assert field(result, "Practice.name").reason.why == f"grant {grant.state}"
    assert row(result, "Practice", "read").through == "no live grant"


def test_explain_notes_a_suspended_partner_and_a_partner_without_grant(sync_engine, world):
    assert "suspended" in explained(sync_engine, "suspended").notes[0]
    result = explained(sync_engine, "unconnected")
    assert result.grants == [] and "no grant at A" in result.notes[0]


def test_explain_lists_near_names_for_an_unknown_partner_or_practice(sync_engine, world):
    with pytest.raises(ExplainError, match=r"no partner named 'no-contac'; near names: no-contact"):
        explained(sync_engine, "no-contac")
    with pytest.raises(ExplainError, match=r"no practice named 'Z'; no name is near it"):
        explained(sync_engine, "full", "Z")


def test_explain_finds_a_practice_by_its_public_id(sync_engine, world):
    assert explained(sync_engine, "full", world.practice_id("A")).practice == "A"


def create_engine_for_settings():
    from api.data.database import make_sync_engine

    return make_sync_engine(get_settings().database_url)


@pytest.fixture
def configured(database_url, monkeypatch):
    monkeypatch.setenv("PARTNER_API_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_explain_command_prints_tables_and_json(configured, world):
    table = runner.invoke(
        app, ["policy", "explain", "--partner", "no-contact", "--practice", "A"], env={"COLUMNS": "250"}
    )
    assert table.exit_code == 0, table.output
    line = FIELDS.splitlines().index('field_needs_scope("Patient.phone", "patients:contact");') + 1
    assert f'fields.polar:{line} field_needs_scope("Patient.phone", "patients:contact")' in table.output
    assert "grant lacks patients:contact" in table.output
    as_json = runner.invoke(
        app, ["policy", "explain", "--partner", "no-contact", "--practice", "A", "--format", "json"]
    )
    data = json.loads(as_json.output)
    phone = next(f for f in data["fields"] if f["field"] == "Patient.phone")
    assert phone["readable"] is False and phone["rule"] == 'field_needs_scope("Patient.phone", "patients:contact")'
    assert {r["action"] for r in data["rows"] if r["resource"] == "Appointment"} == {"read", "reschedule", "cancel"}


def test_explain_never_cuts_a_field_or_rule_name_short_in_a_narrow_terminal(configured, world):
    result = runner.invoke(
        app, ["policy", "explain", "--partner", "no-contact", "--practice", "A"], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    with Session(create_engine_for_settings()) as session:
        names = [f.field for f in explain(session, "no-contact", "A").fields]
    assert max(map(len, names)) > 20 and all(name in result.output for name in names)
    assert 'field_needs_scope("AppointmentChange.appointmentId",' in result.output


def test_explain_command_exits_1_on_an_unknown_name(configured, world):
    result = runner.invoke(app, ["policy", "explain", "--partner", "ful", "--practice", "A"])
    assert result.exit_code == 1 and "no partner named 'ful'; near names: full" in result.output


# ---------------------------------------------------------------------------
# The guide
# ---------------------------------------------------------------------------


def test_the_policy_guide_presents_every_class_the_policy_can_read():
    guide = (REPO / "docs" / "policy-guide.md").read_text()
    for name, (_, fields) in POLAR_CLASSES.items():
        assert f"`{name}`" in guide, f"docs/policy-guide.md: present the Polar class {name}"
        for field_name in fields:
            assert f"`{field_name}`" in guide, f"docs/policy-guide.md: list {name}.{field_name}"


def test_the_policy_guide_commands_exist():
    guide = (REPO / "docs" / "policy-guide.md").read_text()
    for command in ("check", "test", "explain"):
        assert f"partner-api policy {command}" in guide
        assert runner.invoke(app, ["policy", command, "--help"]).exit_code == 0


def test_policy_files_are_the_default_of_every_tool():
    assert set(POLICY_FILES) == set(POLICY_DIR.glob("*.polar"))
