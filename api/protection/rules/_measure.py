"""A number per selection set, each fragment measured once, fragments before the spreads that use them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

from api.errors import ErrorCode


class FragmentMeasure(ABC):
    """Folds a selection set into a number: `field` gives a field's from its children's, `combine`
    joins siblings. A fragment spread counts its fragment's number, computed once per document, so the
    work is linear in the document however often fragments spread one another. A spread closing a
    cycle counts nothing (NoFragmentCyclesRule refuses the document)."""

    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.values: dict[str, int] = {}
        for name in in_dependency_order(fragments):
            self.values[name] = self.of(fragments[name].selection_set)

    @abstractmethod
    def field(self, node: FieldNode, children: int | None) -> int:
        """The number of one field; `children` is its selection's, None for a leaf."""

    @abstractmethod
    def combine(self, values: Iterable[int]) -> int:
        """The number of sibling selections."""

    def of(self, selection_set: SelectionSetNode) -> int:
        return self.combine(self._selection(selection) for selection in selection_set.selections)

    def _selection(self, selection: Any) -> int:
        if isinstance(selection, FieldNode):
            children = self.of(selection.selection_set) if selection.selection_set else None
            return self.field(selection, children)
        if isinstance(selection, InlineFragmentNode):
            return self.of(selection.selection_set)
        assert isinstance(selection, FragmentSpreadNode)
        return self.values.get(selection.name.value, 0)  # unknown or cyclic: refused by the spec rules


def in_dependency_order(fragments: Mapping[str, FragmentDefinitionNode]) -> Iterator[str]:
    """Each fragment's name once, after those it spreads (a spread closing a cycle is ignored);
    iteratively: a chain of fragments is as long as the document allows, deeper than Python's recursion."""
    done: set[str] = set()
    for root in fragments:
        if root in done:
            continue
        path = [(root, iter(_spreads(fragments[root].selection_set)))]
        on_path = {root}
        while path:
            name, spreads = path[-1]
            for spread in spreads:
                if spread in fragments and spread not in done and spread not in on_path:
                    path.append((spread, iter(_spreads(fragments[spread].selection_set))))
                    on_path.add(spread)
                    break
            else:
                path.pop()
                on_path.discard(name)
                done.add(name)
                yield name


def _spreads(selection_set: SelectionSetNode) -> Iterator[str]:
    """The fragments a selection set spreads directly (its own nesting, not theirs)."""
    pending = [selection_set]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                yield selection.name.value
            elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set is not None:
                pending.append(selection.selection_set)


def fragments_of(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def limit_error(message: str, node: Any, limit: str, maximum: int) -> GraphQLError:
    """A refusal naming the limit and its maximum, as every shape limit does."""
    extensions = {"code": ErrorCode.BAD_USER_INPUT.value, "limit": limit, "maximum": maximum}
    return GraphQLError(message, node, extensions=extensions)


class OperationMeasureRule(ValidationRule):
    """Measures each operation of the document with `measure` and refuses those above `maximum`."""

    measure: type[FragmentMeasure]
    limit: str
    maximum: int

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._measure = self.measure(fragments_of(context.document))

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> Any:
        value = self._measure.of(node.selection_set)
        if value > self.maximum:
            self.report_error(limit_error(self.message(value), node, self.limit, self.maximum))
        return self.SKIP  # measured whole: nothing below needs a visit from this rule

    def message(self, value: int) -> str:
        raise NotImplementedError
