"""Adding a scope, tried on a throwaway copy of the project: each step of docs/policy-guide.md's
"Adding a scope" left undone fails a named test, and the steps done leave none failing.

The copy gets `patients:phone` (the phone number alone, for reminders), one step at a time. The
checks run in a fresh interpreter after each stage, since the scope table is read at import.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKS = [
    "tests/test_scope_table.py",
    "tests/schema/test_schema_file.py",
    "tests/data/test_migrations.py::test_migrated_database_matches_the_models",
    "tests/authz/test_policy_cases.py",
    "tests/authz/test_field_coverage.py",
]

ROW = '''    PATIENTS_PHONE = ScopeRow(
        "patients:phone",
        "Read patients' phone number alone (appointment reminders).",
        ledger=LedgerGroup("phone", bit=64, counted_per="patient", holds="phone"),
        fields=("Patient.phone",),
    )

'''
MIGRATION = '''"""A throwaway scope's column (tests/test_adding_a_scope.py).

Revision ID: 0dd5c09e0001
Revises: {head}
Create Date: 2026-11-30 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0dd5c09e0001"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing grants get false. The model has no server default: drop it again. SQLite can do
    # neither without rebuilding `grants`, which drops its triggers: re-create them.
    op.add_column("grants", sa.Column("patients_phone", sa.Boolean(), nullable=False, server_default=sa.false()))
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("grants", "patients_phone", server_default=None)
        return
    with op.batch_alter_table("grants", recreate="always") as batch:
        batch.alter_column("patients_phone", server_default=None)
    bump = "UPDATE partners SET grants_version = grants_version + 1 WHERE id IN ({{}})"
    for name, event, partners in [
        ("grants_version_on_insert", "INSERT", "NEW.partner_id"),
        ("grants_version_on_update", "UPDATE", "OLD.partner_id, NEW.partner_id"),
        ("grants_version_on_delete", "DELETE", "OLD.partner_id"),
    ]:
        op.execute(f"CREATE TRIGGER {{name}} AFTER {{event}} ON grants BEGIN {{bump.format(partners)}}; END")


def downgrade() -> None:
    op.drop_column("grants", "patients_phone")
'''
CASE = """
- name: a reminder service reads the phone with patients:phone
  grant: {scopes: [appointments:read, patients:phone]}
  field: Patient.phone
  expect: allow
"""
EVERY_SCOPE = "patients:contact, appointments:reason]"

MIGRATION_STEP = {"tests/data/test_migrations.py::test_migrated_database_matches_the_models[sqlite]"}
POLICY_STEP = {
    "tests/test_scope_table.py::test_the_policy_has_a_has_scope_rule_reading_the_scope_column[patients:phone]",
    "tests/test_scope_table.py::test_the_scope_opens_fields[patients:phone]",
    "tests/test_scope_table.py::"
    "test_the_ledger_records_what_the_scope_opens_in_a_group_of_its_own_or_as_the_record[patients:phone]",
    "tests/test_scope_table.py::test_the_fields_a_scope_holds_are_those_the_policy_opens_with_it[patients:phone]",
    "tests/authz/test_policy_cases.py::test_every_scope_opens_something_in_some_case",
    "tests/authz/test_policy_cases.py::test_the_internal_note_is_denied_with_every_scope",
}
EXPORT_STEP = {
    "tests/schema/test_schema_file.py::test_checked_in_schema_matches_the_code",
    "tests/test_scope_table.py::test_the_docs_scope_table_is_the_table[README.md]",
    "tests/test_scope_table.py::test_the_docs_scope_table_is_the_table[docs/policy-guide.md]",
    "tests/test_scope_table.py::test_the_partner_guide_names_every_scope",
}


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("project")
    ignore = shutil.ignore_patterns("__pycache__", "*.db", "*.db-*")
    for folder in ("api", "authz", "migrations", "tests", "docs"):
        shutil.copytree(ROOT / folder, target / folder, ignore=ignore)
    for name in ("README.md", "schema.graphql", "pyproject.toml"):
        shutil.copy(ROOT / name, target / name)
    return target


def python(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path: its `api` and `authz`, not the installed ones, are imported.
    env = {"PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=300)


def failing_checks(copy: Path) -> set[str]:
    result = python(copy, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not postgres", *CHECKS)
    failed = set(re.findall(r"^(?:FAILED|ERROR) (\S+)", result.stdout, re.MULTILINE))
    assert failed or result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return failed


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found"
    path.write_text(text.replace(old, new))


def test_each_step_forgotten_fails_a_named_check(copy):
    imported = python(copy, "-c", "import api.scopes; print(api.scopes.__file__)").stdout.strip()
    assert imported == str(copy / "api" / "scopes.py")

    # 1. The row in the scope table: everything derived follows; what is written by hand fails.
    edit(copy / "api/scopes.py", "    @property\n    def column", ROW + "    @property\n    def column")
    assert failing_checks(copy) == MIGRATION_STEP | POLICY_STEP | EXPORT_STEP

    # 2. The migration, 3. the policy (4. the schema field: Patient.phone exists), 5. the cases.
    head = python(
        copy,
        "-c",
        "from alembic.script import ScriptDirectory; from api.data.migrate import alembic_config; "
        "print(ScriptDirectory.from_config(alembic_config()).get_current_head())",
    ).stdout.strip()
    (copy / "migrations/versions/2026_11_30_throwaway_scope.py").write_text(MIGRATION.format(head=head))
    edit(
        copy / "authz/policy.polar",
        "# Each scope is a boolean field",
        '# Each scope is a boolean field\nhas_scope(grant, "patients:phone") if grant.patients_phone = true;\n#',
    )
    with (copy / "authz/fields.polar").open("a") as fields:
        fields.write('field_needs_scope("Patient.phone", "patients:phone");\n')
    with (copy / "authz/policy_tests/patients.yaml").open("a") as cases:
        cases.write(CASE)
    edit(copy / "authz/policy_tests/appointments.yaml", EVERY_SCOPE, EVERY_SCOPE.replace("]", ", patients:phone]"))
    assert failing_checks(copy) == EXPORT_STEP

    # Then the exported schema and the docs' tables, made by the copy's own code.
    python(copy, "-c", "from api.operators.cli import main; main()", "export-schema")
    python(
        copy,
        "-c",
        "from pathlib import Path; from api.scopes import markdown_table; import re\n"
        "for doc in ('README.md', 'docs/policy-guide.md'):\n"
        "    p = Path(doc); p.write_text(re.sub(r'\\| scope \\|.*?\\n(?!\\|)', markdown_table() + '\\n', "
        "p.read_text(), flags=re.S))",
    )
    with (copy / "docs/partner-guide.md").open("a") as guide:
        guide.write("\n`patients:phone`: the phone number alone.\n")
    assert failing_checks(copy) == set()
