"""Max selections: the fields an operation selects once its fragments are expanded.

Not a rule of the GraphQL specification, which leaves "limiting the complexity of queries" to the
service (https://spec.graphql.org/October2021/#sec-Validation). A fragment spread twice in a fragment
spread twice... doubles the selection per level: 1.3 KB of text select 2^40 fields. The count is
made without expanding anything (each fragment's count is computed once), so refusing such a
document costs as little as reading it, and what comes after validation (cost, execution) only ever
walks a bounded selection.
"""

from __future__ import annotations

from collections.abc import Iterable

from graphql import FieldNode, ValidationRule

from api.protection.rules._measure import FragmentMeasure, OperationMeasureRule

__all__ = ["max_selections_rule"]


class Selections(FragmentMeasure):
    def field(self, node: FieldNode, children: int | None) -> int:
        return 1 + (children or 0)

    def combine(self, values: Iterable[int]) -> int:
        return sum(values)


def max_selections_rule(maximum: int) -> type[ValidationRule]:
    """The rule refusing operations selecting more than `maximum` fields after fragment expansion
    (`extensions.limit: "selections"`).

    Example: `validate(schema, parse("fragment V on Viewer { id name } { viewer { ...V ...V } }"),
    [max_selections_rule(4)])` (5: refused)
    """

    class MaxSelectionsRule(OperationMeasureRule):
        measure, limit = Selections, "selections"

        def message(self, value: int) -> str:
            shown = f"{value:,}" if value < 10**12 else "more than 10^12"
            return f"The operation selects {shown} fields once its fragments are expanded; the maximum is {maximum:,}."

    MaxSelectionsRule.maximum = maximum
    return MaxSelectionsRule
