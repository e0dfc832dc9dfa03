"""Max field repeats: the fields merged into one field of the response, fragments expanded.

The specification lets a document name the same field many times, merged into one response field,
and requires every two of them to be checked for a conflict, with their sub-selections
(https://spec.graphql.org/October2021/#sec-Field-Selection-Merging): graphql-core's
OverlappingFieldsCanBeMergedRule compares them pairwise. `{ viewer { grants { id } } }` repeated 250
times in 3 KB took 480 ms of a worker's event loop to validate; as many distinct fragments each
selecting it, or inline fragments, as much; and 12 `viewer` each selecting `grants` 20 times, 160 ms
(240 `grants` merged into one response field). The document was then refused, or served for
nothing, as validation is not charged. Bounding the fields merged into each response field bounds
the pairs, level by level, whatever the fragments; a generated client repeating `id` in each of its
fragments stays far below the default.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

from api.protection.rules._measure import fragments_of, limit_error

__all__ = ["max_field_repeats_rule"]


def max_field_repeats_rule(maximum: int, max_selections: int) -> type[ValidationRule]:
    """The rule refusing an operation in which more than `maximum` fields merge into one response
    field, fragments and inline fragments expanded (`extensions.limit: "fieldRepeats"`). It walks the
    operation as expanded and stops after `max_selections` fields: the selections rule refuses more.

    Example: `validate(schema, parse("{ viewer { id id id } }"), [max_field_repeats_rule(2, 500)])` (3: refused)
    """

    class MaxFieldRepeatsRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self._fragments = fragments_of(context.document)

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> Any:
            found = self._most_merged(node.selection_set)
            if found is not None:
                key, merged, field = found
                message = (
                    f"{merged} fields are merged into the response field `{key}` once fragments are expanded; "
                    f"the maximum is {maximum}."
                )
                self.report_error(limit_error(message, field, "fieldRepeats", maximum))
            return self.SKIP

        def _most_merged(self, root: SelectionSetNode) -> tuple[str, int, FieldNode] | None:
            """The first response field merging more than `maximum` fields: its key, their number and
            its first field; None. Level by level: each response object is the selection sets of the
            fields merged into its parent field."""
            visited = 0
            objects = [[root]]
            while objects:
                merged: dict[str, list[FieldNode]] = {}
                expanded: set[str] = set()  # a fragment is collected once per object, as graphql-core does
                pending = objects.pop()
                while pending:
                    for selection in pending.pop().selections:
                        if isinstance(selection, FieldNode):
                            visited += 1  # fields only, as max_selections counts them: its refusal is the one
                            if visited > max_selections:
                                return None
                            merged.setdefault((selection.alias or selection.name).value, []).append(selection)
                        elif isinstance(selection, InlineFragmentNode):
                            pending.append(selection.selection_set)
                        elif isinstance(selection, FragmentSpreadNode):
                            name = selection.name.value
                            # once: a cycle of spreads without a field ends here (NoFragmentCycles refuses it)
                            if name in self._fragments and name not in expanded:
                                expanded.add(name)
                                pending.append(self._fragments[name].selection_set)
                for key, fields in merged.items():
                    if len(fields) > maximum:
                        return key, len(fields), fields[0]
                    children = [field.selection_set for field in fields if field.selection_set is not None]
                    if children:
                        objects.append(children)
            return None

    return MaxFieldRepeatsRule
