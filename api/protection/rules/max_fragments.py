"""Max fragment definitions per document.

The specification's rule that fields merge without conflict compares fragments pairwise
(https://spec.graphql.org/October2021/#sec-Field-Selection-Merging; graphql-core's
OverlappingFieldsCanBeMergedRule compares each pair of fragments spread in a selection set, and
the fragments they spread in turn): its work grows with the square of the fragments. Three hundred
one-field fragments, within the token limit, cost a worker a fifth of a second each time their text
changed. A document may define a bounded number of them.
"""

from __future__ import annotations

from typing import Any

from graphql import DocumentNode, FragmentDefinitionNode, ValidationRule

from api.protection.rules._measure import limit_error

__all__ = ["max_fragments_rule"]


def max_fragments_rule(maximum: int) -> type[ValidationRule]:
    """The rule refusing a document of more than `maximum` fragment definitions (`extensions.limit: "fragments"`).

    Example: `validate(schema, parse("{ viewer { ...A ...B } } fragment A on Viewer { id } "
    "fragment B on Viewer { name }"), [max_fragments_rule(1)])` (refused)
    """

    class MaxFragmentsRule(ValidationRule):
        def enter_document(self, node: DocumentNode, *_: Any) -> Any:
            count = sum(isinstance(d, FragmentDefinitionNode) for d in node.definitions)
            if count > maximum:
                self.report_error(
                    limit_error(
                        f"The document defines {count} fragments; the maximum is {maximum}.",
                        None,
                        "fragments",
                        maximum,
                    )
                )
            return self.BREAK  # nothing below the document concerns this rule

    return MaxFragmentsRule
