"""Every field of the GraphQL schema is classified by the policy, so no new field leaks by default."""

from graphql import GraphQLObjectType
from polar import Variable

from api.schema import schema
from authz.engine import build_oso

oso = build_oso()


def facts(rule: str, arity: int) -> set[tuple]:
    variables = [Variable(f"x{i}") for i in range(arity)]
    results = oso.query_rule(rule, *variables, accept_expression=False)
    return {tuple(r["bindings"][f"x{i}"] for i in range(arity)) for r in results}


def schema_fields() -> dict[str, set[str]]:
    return {
        name: set(t.fields)
        for name, t in schema._schema.type_map.items()
        if isinstance(t, GraphQLObjectType) and not name.startswith("__")
    }


def test_every_field_has_a_rule_or_its_type_is_declared_free_of_practice_data():
    free_types = {t for (t,) in facts("structural_type", 1) | facts("own_account_type", 1)}
    ruled = {f for (f,) in facts("field_with_any_grant", 1)} | {f for f, _ in facts("field_needs_scope", 2)}
    unruled = [
        f"{type_name}.{field}"
        for type_name, fields in schema_fields().items()
        if type_name not in free_types
        for field in fields
        if f"{type_name}.{field}" not in ruled
    ]
    assert unruled == [], f"add a rule in authz/fields.polar for: {unruled}"


def test_every_field_rule_names_a_field_of_the_schema():
    existing = {f"{t}.{f}" for t, fields in schema_fields().items() for f in fields}
    ruled = {f for (f,) in facts("field_with_any_grant", 1)} | {f for f, _ in facts("field_needs_scope", 2)}
    assert ruled - existing == set(), "stale rules in authz/fields.polar"
    declared_types = {t for (t,) in facts("structural_type", 1) | facts("own_account_type", 1)}
    assert declared_types - set(schema_fields()) == set(), "stale type lines in authz/fields.polar"


def test_scoped_fields_are_nullable_so_they_can_be_forbidden():
    from graphql import GraphQLNonNull

    for field, _ in facts("field_needs_scope", 2) | {(f, None) for (f,) in facts("field_with_any_grant", 1)}:
        type_name, name = field.split(".")
        if name == "id":
            continue  # ids are the objects' identity: their rule guards the whole object
        graphql_field = schema._schema.type_map[type_name].fields[name]
        assert not isinstance(graphql_field.type, GraphQLNonNull), f"{field} must be nullable"


def test_the_internal_note_is_neither_in_the_schema_nor_readable():
    assert "internalNote" not in schema_fields()["Appointment"]
    assert ("Appointment.internalNote",) not in facts("field_with_any_grant", 1)
    assert not [f for f, _ in facts("field_needs_scope", 2) if f == "Appointment.internalNote"]
