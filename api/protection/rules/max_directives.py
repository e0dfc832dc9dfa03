"""Max directives per selection.

Not a rule of the GraphQL specification, which allows repeatable directives
(https://spec.graphql.org/October2021/#sec-Directives-Are-Unique-Per-Location): each directive on a
field, a fragment spread or an inline fragment is evaluated every time the selection is collected,
so a selection may carry a bounded number of them.
"""

from __future__ import annotations

from typing import Any

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, ValidationRule

from api.protection.rules._measure import limit_error

__all__ = ["max_directives_rule"]


def max_directives_rule(maximum: int) -> type[ValidationRule]:
    """The rule refusing a field, fragment spread or inline fragment with more than `maximum`
    directives (`extensions.limit: "directives"`).

    Example: `validate(schema, parse("{ viewer { name @skip(if: false) @include(if: true) } }"),
    [max_directives_rule(1)])` (refused)
    """

    class MaxDirectivesRule(ValidationRule):
        def _check(self, node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> None:
            if len(node.directives or ()) > maximum:
                self.report_error(
                    limit_error(
                        f"At most {maximum} directives per field or fragment.",
                        node,
                        "directives",
                        maximum,
                    )
                )

        def enter_field(self, node: FieldNode, *_: Any) -> None:
            self._check(node)

        def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
            self._check(node)

        def enter_inline_fragment(self, node: InlineFragmentNode, *_: Any) -> None:
            self._check(node)

    return MaxDirectivesRule
