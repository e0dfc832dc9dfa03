"""Max aliases.

Not a rule of the GraphQL specification (https://spec.graphql.org/October2021/#sec-Field-Alias):
aliases let one document ask for the same expensive field many times under other names, so the
aliases an operation uses, counted in every fragment it spreads as often as it spreads it, are
bounded.
"""

from __future__ import annotations

from collections.abc import Iterable

from graphql import FieldNode, ValidationRule

from api.protection.rules._measure import FragmentMeasure, OperationMeasureRule

__all__ = ["max_aliases_rule"]


class Aliases(FragmentMeasure):
    def field(self, node: FieldNode, children: int | None) -> int:
        return (node.alias is not None) + (children or 0)

    def combine(self, values: Iterable[int]) -> int:
        return sum(values)


def max_aliases_rule(maximum: int) -> type[ValidationRule]:
    """The rule refusing operations with more than `maximum` aliases (`extensions.limit: "aliases"`).

    Example: `validate(schema, parse("{ viewer { a: id b: id } }"), [max_aliases_rule(1)])` (2 aliases: refused)
    """

    class MaxAliasesRule(OperationMeasureRule):
        measure, limit = Aliases, "aliases"

        def message(self, value: int) -> str:
            return f"The operation uses {value} aliases; the maximum is {maximum}."

    MaxAliasesRule.maximum = maximum
    return MaxAliasesRule
