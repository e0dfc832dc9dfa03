"""schema.graphql is exported from the code, never edited by hand: it must match."""

from pathlib import Path

from api.schema import schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_checked_in_schema_matches_the_code():
    assert SCHEMA_FILE.read_text() == schema.as_str() + "\n", "run `make schema` and commit schema.graphql"


def test_every_type_field_and_argument_has_a_description():
    from graphql import GraphQLInterfaceType, GraphQLObjectType

    missing = []
    for name, graphql_type in schema._schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Boolean", "ID", "Float"}:
            continue
        if not graphql_type.description:
            missing.append(name)
        if isinstance(graphql_type, (GraphQLObjectType, GraphQLInterfaceType)):
            for field_name, field in graphql_type.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                missing += [f"{name}.{field_name}({a})" for a, arg in field.args.items() if not arg.description]
    assert missing == []


def test_live_introspection_is_the_schema_file():
    """What integrators' tools read from the server (graphql-js's findBreakingChanges against the file):
    the directive `@requiresScopes` was put on after the build, and its definition was not introspected."""
    from graphql import build_client_schema, build_schema, find_breaking_changes, get_introspection_query, graphql_sync

    introspected = graphql_sync(schema._schema, get_introspection_query(input_value_deprecation=True))
    assert introspected.errors is None
    live, file = build_client_schema(introspected.data), build_schema(SCHEMA_FILE.read_text())
    assert find_breaking_changes(file, live) == []
    assert {directive.name for directive in file.directives} <= {directive.name for directive in live.directives}
