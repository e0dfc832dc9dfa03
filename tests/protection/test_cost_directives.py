"""`@cost` and `@listSize` are declared as Apollo's cost spec (https://specs.apollo.dev/cost/v0.1)
and IBM's GraphQL Cost Directives Specification write them, so that tools reading them agree."""

from graphql import build_schema, print_directive

from api.schema import schema

SPEC = build_schema(
    """
directive @cost(weight: Int!)
  on ARGUMENT_DEFINITION | ENUM | FIELD_DEFINITION | INPUT_FIELD_DEFINITION | OBJECT | SCALAR
directive @listSize(assumedSize: Int, slicingArguments: [String!], sizedFields: [String!],
  requireOneSlicingArgument: Boolean = true) on FIELD_DEFINITION
type Query { a: Int }
"""
)


def shape(directive) -> tuple:
    """What a tool reads of a directive: its locations, its arguments' types and defaults."""
    arguments = {
        # graphql-core's Undefined equals None: `= null` and no default read alike, as for tools.
        name: (str(argument.type), argument.default_value)
        for name, argument in directive.args.items()
    }
    return sorted(location.name for location in directive.locations), arguments, directive.is_repeatable


def test_cost_and_list_size_are_declared_as_the_specifications_declare_them():
    published = build_schema(schema.as_str())
    for name in ("cost", "listSize"):
        assert shape(published.get_directive(name)) == shape(SPEC.get_directive(name)), print_directive(
            published.get_directive(name)
        )
