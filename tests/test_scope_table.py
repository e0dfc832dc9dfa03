"""Every scope of the table (api/scopes.py) reaches every place it must, or a test here fails.

Derived from the table, so never forgotten: the grant column (`api.data.models.Grant`), the Grant
fields oso may read (`authz.engine.POLAR_CLASSES`), the schema's `@requiresScopes`, the ledger's groups
and the exposure report's columns. Checked here, because they are written by hand: the policy's
`has_scope` rule and the fields a scope opens (`authz/*.polar`), the docs' scope tables. The
migration adding the column is checked by `alembic check` (tests/data/test_migrations.py).
"""

from pathlib import Path

import pytest
from graphql import build_schema, value_from_ast_untyped
from sqlalchemy import Boolean

from api.data.models import Grant
from api.ledger.access import FIELD_GROUPS, RECORD_GROUPS, group_names
from api.schema import schema
from api.schema.requires_scopes import ENTRY_POINT_SCOPES
from api.scopes import Scope, markdown_table
from authz.engine import POLAR_CLASSES, Authorizer

ROOT = Path(__file__).resolve().parents[1]
authorizer = Authorizer()
SCOPES = [pytest.param(scope, id=scope.value) for scope in Scope]


def grant_with(scopes: set[Scope]) -> Grant:
    grant = Grant(id=1, partner_id=1, practice_id=1)
    grant.set_scopes(scopes)
    return grant


def opened_fields(scope: Scope) -> set[str]:
    return {field for field, scopes in authorizer.field_scopes.items() if scope.value in scopes}


@pytest.mark.parametrize("scope", SCOPES)
def test_the_policy_has_a_has_scope_rule_reading_the_scope_column(scope):
    oso = authorizer.oso
    assert oso.query_rule_once("has_scope", grant_with({scope}), scope.value), (
        f'add to authz/policy.polar: has_scope(grant, "{scope.value}") if grant.{scope.column} = true;'
    )
    others = grant_with(set(Scope) - {scope})
    assert not oso.query_rule_once("has_scope", others, scope.value), f"has_scope of {scope.value} reads another column"


@pytest.mark.parametrize("scope", SCOPES)
def test_the_grant_has_a_boolean_column_oso_may_read(scope):
    column = Grant.__table__.c[scope.column]
    assert isinstance(column.type, Boolean) and not column.nullable
    assert POLAR_CLASSES["Grant"][1][scope.column] is bool


@pytest.mark.parametrize("scope", SCOPES)
def test_the_scope_opens_fields(scope):
    # (tests/authz/test_policy_cases.py asks for a policy case where it opens something.)
    assert opened_fields(scope), f'no field_needs_scope(..., "{scope.value}") in authz/fields.polar'


@pytest.mark.parametrize("scope", SCOPES)
def test_the_ledger_records_what_the_scope_opens_in_a_group_of_its_own_or_as_the_record(scope):
    """A scope recorded as the record itself may open only the record's own fields (those of
    appointments:read): anything more needs a group of its own, or the ledger would under-report it."""
    if scope.group is None:
        extra = opened_fields(scope) - opened_fields(Scope.APPOINTMENTS_READ)
        assert not extra, f"{scope.value} opens {sorted(extra)}: give it a LedgerGroup of its own in api/scopes.py"
    else:
        recorded = {field for field in opened_fields(scope) if field.split(".")[0] in ("Appointment", "Patient")}
        assert recorded, f"{scope.value} has a ledger group but opens no Appointment or Patient field: it never shows"


@pytest.mark.parametrize("scope", SCOPES)
def test_the_fields_a_scope_holds_are_those_the_policy_opens_with_it(scope):
    """`fields` (recorded in the scope's group whatever a released policy says) and the shipped policy's
    Appointment and Patient fields of the scope are one list: neither may forget a field."""
    if scope.group is None:
        assert scope.fields == (), f"{scope.value} is recorded as the record itself: it holds no fields apart"
    else:
        opened = {field for field in opened_fields(scope) if field.split(".")[0] in ("Appointment", "Patient")}
        assert set(scope.fields) == opened, f"api/scopes.py {scope.name}.fields and authz/fields.polar differ"


def test_the_stored_bits_of_the_ledger_groups_never_change():
    # `disclosures.field_groups` holds these bits: renumbering one would rewrite the ledger's past.
    stored = {"appointment": 1, "reason": 2, "patient": 4, "identity": 8, "contact": 16, "history": 32}
    assert {g.name: g.bit for g in FIELD_GROUPS if g.name in stored} == stored


def test_each_ledger_group_has_a_bit_and_a_name_of_its_own():
    bits = [group.bit for group in FIELD_GROUPS]
    assert all(bit > 0 and bit & (bit - 1) == 0 for bit in bits), "one bit each"
    assert len(set(bits)) == len(bits) and len({g.name for g in FIELD_GROUPS}) == len(FIELD_GROUPS)
    assert set(RECORD_GROUPS) <= set(FIELD_GROUPS)
    assert group_names(sum(bits)) == [g.name for g in FIELD_GROUPS]


def test_the_schema_names_each_scope_as_the_table_spells_it():
    description = schema._schema.type_map["ViewerGrant"].fields["scopes"].description
    assert [s.value for s in Scope if f"`{s.value}`" not in description] == []
    assert "Scope" not in schema._schema.type_map  # no second spelling (APPOINTMENTS_READ)


def _published_scopes() -> dict[str, list[list[str]]]:
    """Each field's `@requiresScopes(scopes:)`, as the schema prints it (schema.graphql is checked against it)."""
    published = build_schema(schema.as_str())
    found = {}
    for type_name, graphql_type in published.type_map.items():
        for field_name, field in getattr(graphql_type, "fields", {}).items():
            for directive in (field.ast_node.directives or ()) if field.ast_node else ():
                if directive.name.value == "requiresScopes":
                    found[f"{type_name}.{field_name}"] = value_from_ast_untyped(directive.arguments[0].value)
    return found


def test_requires_scopes_in_the_schema_is_the_policy_field_by_field():
    expected = {name: sorted(scopes) for name, scopes in authorizer.field_scopes.items()}
    for name, scopes in ENTRY_POINT_SCOPES.items():
        expected[name] = sorted(scope.value for scope in scopes)
    published = {name: sorted(alternative for (alternative,) in scopes) for name, scopes in _published_scopes().items()}
    assert published == expected
    assert "Practice.name" not in published and "Query.viewer" not in published  # any grant, or none



@pytest.mark.parametrize("doc", ["README.md", "docs/policy-guide.md"])
def test_the_docs_scope_table_is_the_table(doc):
    text = (ROOT / doc).read_text()
    assert markdown_table() in text, (
        f"{doc}: replace its scope table with api.scopes.markdown_table():\n{markdown_table()}"
    )


def test_the_partner_guide_names_every_scope():
    guide = (ROOT / "docs/partner-guide.md").read_text()
    assert [s.value for s in Scope if f"`{s.value}`" not in guide] == []
