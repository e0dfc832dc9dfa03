"""Shape limits: checked once per distinct document, before anything runs, and cached with it.

Each refusal is a GraphQL error with `extensions.code = BAD_USER_INPUT`, the name of the limit
and its maximum, answered with HTTP 400. Limits that depend on variables (page sizes, date
windows, cost) are checked at execution time instead, so cached documents are re-checked
with every request's variables.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections import OrderedDict
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    specified_rules,
    validate,
)
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as aliases_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from api.errors import ErrorCode
from api.settings import Settings

VALIDATION_CACHE_SIZE = 512


def _labelled(rule: type[ASTValidationRule], limit: str, maximum: int) -> type[ASTValidationRule]:
    """The rule, with its errors carrying the API's code, the limit's name and its maximum."""
    extensions = {"code": ErrorCode.BAD_USER_INPUT.value, "limit": limit, "maximum": maximum}

    class Labelling:
        # strawberry's rules report through the validation context: relabel on the way.
        def __init__(self, context: ValidationContext) -> None:
            self._context = context

        def __getattr__(self, name: str) -> Any:
            return getattr(self._context, name)

        def report_error(self, error: GraphQLError) -> None:
            self._context.report_error(GraphQLError(error.message, error.nodes, extensions=extensions))

    class Labelled(rule):  # type: ignore[valid-type, misc]
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(Labelling(context))  # type: ignore[arg-type]

    Labelled.__name__ = f"{limit.title()}Limit"
    return Labelled


def _directives_validator(maximum: int) -> type[ASTValidationRule]:
    class DirectivesPerField(ValidationRule):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            if len(node.directives or ()) > maximum:
                self.report_error(
                    GraphQLError(f"At most {maximum} directives per field.", node)
                )

    return DirectivesPerField


class StorableStrings(ValidationRule):
    """A string literal may not hold U+0000 (`"\\u0000"`): no text column of PostgreSQL can store it.
    The same check on JSON variables is made by the HTTP view."""

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if "\x00" in node.value:
            self.report_error(GraphQLError("Strings may not contain U+0000.", node))


def limit_rules(settings: Settings) -> tuple[type[ASTValidationRule], ...]:
    """Built once: a rule class made per request would defeat the validation cache."""
    return (
        *specified_rules,
        MaybeNullValidationRule,
        OneOfInputValidationRule,
        StorableStrings,
        _labelled(depth_validator(settings.max_query_depth, None, None), "depth", settings.max_query_depth),
        _labelled(aliases_validator(settings.max_aliases), "aliases", settings.max_aliases),
        _labelled(_directives_validator(settings.max_directives_per_field), "directives", settings.max_directives_per_field),
    )


class _ValidationCache:
    """Validation errors per query text (the parser cache returns the same document for it), so a
    hit costs one string hash rather than hashing the whole document tree."""

    def __init__(self, size: int = VALIDATION_CACHE_SIZE) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[str, tuple[type[ASTValidationRule], ...]], list[GraphQLError]] = OrderedDict()

    def validate(
        self, schema: GraphQLSchema, query: str, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
    ) -> list[GraphQLError]:
        key = (query, rules)
        errors = self.entries.get(key)
        if errors is None:
            # Suggestions ("did you mean") would describe the schema to whoever probes it.
            errors = self.entries[key] = validate(schema, document, rules, hide_suggestions=True)
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)
        else:
            self.entries.move_to_end(key)
        return errors


_cache = _ValidationCache()


class CachedValidation(SchemaExtension):
    """Validates with the limit rules, once per distinct document."""

    def __init__(self, rules: tuple[type[ASTValidationRule], ...]) -> None:
        super().__init__()
        self.rules = rules

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None and context.query is not None
        errors = _cache.validate(context.schema._schema, context.query, context.graphql_document, self.rules)
        # strawberry runs the first operation when no name is given; the GraphQL spec refuses to guess.
        # (Not cached: it depends on the request's operationName, which strawberry keeps private.)
        operations = sum(isinstance(d, OperationDefinitionNode) for d in context.graphql_document.definitions)
        if operations > 1 and getattr(context, "_provided_operation_name", None) is None:
            errors = [*errors, GraphQLError("Must provide operation name if query contains multiple operations.")]
        context.pre_execution_errors = errors
        yield
