"""Max depth.

Not a rule of the GraphQL specification, which leaves "limiting the complexity of queries" to the
service (https://spec.graphql.org/October2021/#sec-Validation): an operation whose fields nest deeper
than the maximum is refused. A field counts one level; fragments add none of their own; introspection
fields (`__schema`, `__type`, `__typename`) count nothing, being bounded by graphql-core's
MaxIntrospectionDepthRule.
"""

from __future__ import annotations

from collections.abc import Iterable

from graphql import FieldNode, ValidationRule

from api.protection.rules._measure import FragmentMeasure, OperationMeasureRule

__all__ = ["max_depth_rule"]


class Depth(FragmentMeasure):
    def field(self, node: FieldNode, children: int | None) -> int:
        if node.name.value.startswith("__"):
            return 0
        return 1 + (children or 0)

    def combine(self, values: Iterable[int]) -> int:
        return max(values, default=0)


def max_depth_rule(maximum: int) -> type[ValidationRule]:
    """The rule refusing operations deeper than `maximum` (`extensions.limit: "depth"`).

    Example: `validate(schema, parse("{ viewer { grants { id } } }"), [max_depth_rule(2)])` (depth 3: refused)
    """

    class MaxDepthRule(OperationMeasureRule):
        measure, limit = Depth, "depth"

        def message(self, value: int) -> str:
            return f"The operation nests {value} levels deep; the maximum is {maximum}."

    MaxDepthRule.maximum = maximum
    return MaxDepthRule
