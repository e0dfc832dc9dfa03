"""Max operations per document.

The GraphQL specification lets a document hold many operations, of which a request executes one
(https://spec.graphql.org/October2021/#sec-Executing-Requests): the others are parsed and validated
for nothing, and validating a document's operations together costs more than their number (each
operation's variables are traced through every fragment it spreads). A document may hold a bounded
number of them.
"""

from __future__ import annotations

from typing import Any

from graphql import DocumentNode, OperationDefinitionNode, ValidationRule

from api.protection.rules._measure import limit_error

__all__ = ["max_operations_rule"]


def max_operations_rule(maximum: int) -> type[ValidationRule]:
    """The rule refusing a document of more than `maximum` operations (`extensions.limit: "operations"`).

    Example: `validate(schema, parse("query A { viewer { id } } query B { viewer { id } }"),
    [max_operations_rule(1)])` (refused)
    """

    class MaxOperationsRule(ValidationRule):
        def enter_document(self, node: DocumentNode, *_: Any) -> Any:
            count = sum(isinstance(d, OperationDefinitionNode) for d in node.definitions)
            if count > maximum:
                self.report_error(
                    limit_error(
                        f"The document holds {count} operations; the maximum is {maximum}.",
                        None,
                        "operations",
                        maximum,
                    )
                )
            return self.BREAK  # nothing below the document concerns this rule

    return MaxOperationsRule
