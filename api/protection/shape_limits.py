"""Shape limits: checked once per distinct document, before anything runs, and cached with it.

Each refusal is a GraphQL error with `extensions.code = BAD_USER_INPUT`, the name of the limit
and its maximum, answered with HTTP 400. Limits that depend on variables (page sizes, date
windows, cost) are checked at execution time instead, so cached documents are re-checked
with every request's variables.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from graphql import (
    ASTValidationRule,
    DocumentNode,
    FloatValueNode,
    GraphQLError,
    GraphQLSchema,
    IntValueNode,
    NoUnusedFragmentsRule,
    OperationDefinitionNode,
    StringValueNode,
    ValidationRule,
    parse,
    specified_rules,
    validate,
)
from graphql.language.parser import MAX_NESTING_DEPTH as MAX_PARSER_NESTING
from graphql.validation.rules.max_introspection_depth_rule import MAX_LIST_DEPTH as MAX_INTROSPECTION_LIST_DEPTH
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from api.errors import ErrorCode
from api.protection.rules import (
    max_aliases_rule,
    max_depth_rule,
    max_directives_rule,
    max_field_repeats_rule,
    max_fragments_rule,
    max_operations_rule,
    max_selections_rule,
)
from api.protection.rules._measure import limit_error
from api.settings import Settings

# Parsed documents, and their validation errors, are kept per text, bounded by the text they hold: a
# parsed document weighs about 120 times its text (each token is kept, for the errors' locations), and
# 1,200 distinct 15 KB documents refused for their size grew a worker past 1 GB under a bound of 512
# entries. This bounds each cache to about 60 MB.
CACHED_TEXT = 512 * 1024  # characters
# Errors reported per document before validation gives up (graphql-core's default is 100): each
# error locates itself in the text, so 700 unused variables would cost 700 scans of it.
MAX_ERRORS = 20
TOO_MANY_TOKENS = re.compile(r"Document contains more than \d+ tokens")  # graphql-core's parser...
TOO_DEEP_TO_PARSE = "Document is nested too deeply"  # ...and its own nesting limit
INTROSPECTION_TOO_DEEP = "Maximum introspection depth exceeded"  # MaxIntrospectionDepthRule's message


class StorableStrings(ValidationRule):
    """A string literal may not hold U+0000 (`"\\u0000"`): no text column of PostgreSQL can store it.
    The same check on JSON variables is made by the HTTP view."""

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if "\x00" in node.value:
            self.report_error(GraphQLError("Strings may not contain U+0000.", node))


MAX_NUMBER_LENGTH = 100  # characters: an Int holds 11, a Float's 17 digits and exponent fit many times


class BoundedNumbers(ValidationRule):
    """A number literal longer than any value of its type: Python refuses to read an integer of more
    than 4,300 digits with a ValueError, which graphql-core's Int would pass on as a server error."""

    def enter_int_value(self, node: IntValueNode, *_: Any) -> None:
        self._bounded(node)

    def enter_float_value(self, node: FloatValueNode, *_: Any) -> None:
        self._bounded(node)

    def _bounded(self, node: IntValueNode | FloatValueNode) -> None:
        if len(node.value) > MAX_NUMBER_LENGTH:
            message = f"Numbers are limited to {MAX_NUMBER_LENGTH} characters."
            self.report_error(limit_error(message, node, "numberLength", MAX_NUMBER_LENGTH))


@dataclass(frozen=True)
class ValidationRules:
    """The shape limits, linear in the document and run first, then the specification's rules (and
    strawberry's), which only ever see a document of bounded shape."""

    shape: tuple[type[ASTValidationRule], ...]
    spec: tuple[type[ASTValidationRule], ...]


def limit_rules(settings: Settings) -> ValidationRules:
    """Built once: a rule class made per request would defeat the validation cache."""
    return ValidationRules(
        shape=(
            max_operations_rule(settings.max_operations),
            max_depth_rule(settings.max_query_depth),
            max_aliases_rule(settings.max_aliases),
            max_selections_rule(settings.max_selections),
            max_field_repeats_rule(settings.max_field_repeats, settings.max_selections),
            max_directives_rule(settings.max_directives_per_field),
            max_fragments_rule(settings.max_fragments),
            # The specification's own, run first too: the limits above measure each operation as
            # expanded, and a fragment no operation spreads would reach graphql-core's pairwise
            # comparison of merged fields unmeasured (OverlappingFieldsCanBeMergedRule walks every
            # fragment definition).
            NoUnusedFragmentsRule,
            BoundedNumbers,
        ),
        spec=(*specified_rules, MaybeNullValidationRule, OneOfInputValidationRule, StorableStrings),
    )


def _named(error: GraphQLError) -> GraphQLError:
    """graphql-core's own limits, named as ours are: its introspection depth, and the work or the
    errors after which it gives up on a document ("Validation aborted.")."""
    if error.message == INTROSPECTION_TOO_DEEP:
        return limit_error(
            "Introspection may nest `fields`, `inputFields`, `interfaces` and `possibleTypes` at most "
            f"{MAX_INTROSPECTION_LIST_DEPTH} deep.", error.nodes, "introspectionDepth", MAX_INTROSPECTION_LIST_DEPTH,
        )
    if not isinstance(error, ValidationAbortedError):
        return error
    return GraphQLError(
        f"Validation stopped: the document has more than {MAX_ERRORS} errors, or is too complex to validate "
        "(select fewer fields, or fewer fields of the same name).",
        extensions={"code": ErrorCode.BAD_USER_INPUT.value, "limit": "validation"},
    )


_parsed: LRUCache[tuple[str, int], tuple[int, DocumentNode]] = LRUCache(CACHED_TEXT, getsizeof=lambda entry: entry[0])
_validated: LRUCache[tuple[str, ValidationRules], tuple[int, list[GraphQLError]]] = LRUCache(
    CACHED_TEXT, getsizeof=lambda entry: entry[0]
)


def _kept(cache: LRUCache[Any, tuple[int, Any]], key: Any, entry: tuple[int, Any]) -> None:
    if entry[0] <= CACHED_TEXT:  # a larger one would empty the cache, and not fit
        cache[key] = entry


def parsed(text: str, max_tokens: int) -> DocumentNode:
    """The document of `text`, parsing at most `max_tokens` lexical tokens (graphql-core's parser option)."""
    entry = _parsed.get((text, max_tokens))
    if entry is None:
        entry = (max(1, len(text)), parse(text, max_tokens=max_tokens))
        _kept(_parsed, (text, max_tokens), entry)
    return entry[1]


def validated(schema: GraphQLSchema, text: str, document: DocumentNode, rules: ValidationRules) -> list[GraphQLError]:
    """The validation errors of the document of `text` (the same document for the same text, so a hit
    costs one string hash rather than hashing the whole document tree)."""
    entry = _validated.get((text, rules))
    if entry is None:
        # A document over a shape limit is refused before the other rules walk it.
        errors = validate(schema, document, rules.shape)
        if not errors:
            # Suggestions ("did you mean") would describe the schema to whoever probes it.
            errors = [
                _named(e) for e in validate(schema, document, rules.spec, max_errors=MAX_ERRORS, hide_suggestions=True)
            ]
        entry = (max(1, len(text)), errors)
        _kept(_validated, (text, rules), entry)
    return entry[1]


class LimitedParsing(SchemaExtension):
    """Parses through the cache above, at most `max_tokens` lexical tokens, with the refusal naming the
    limit as the other shape limits do (the parse raises inside this hook, the only place where its error
    can be caught)."""

    def __init__(self, max_tokens: int) -> None:
        super().__init__()
        self.max_tokens = max_tokens

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        prepared = getattr(context.context, "document", None)
        if prepared is not None:  # a registered document, parsed once per worker (api/documents/registry.py)
            context.graphql_document = prepared.document
            yield
            return
        assert context.query is not None
        try:
            context.graphql_document = parsed(context.query, self.max_tokens)
        except GraphQLError as error:
            if TOO_MANY_TOKENS.search(error.message):
                error.extensions = {**(error.extensions or {}), "limit": "tokens", "maximum": self.max_tokens}
            elif TOO_DEEP_TO_PARSE in error.message:
                error.extensions = {**(error.extensions or {}), "limit": "nesting", "maximum": MAX_PARSER_NESTING}
            raise
        yield


def checked_document(schema: GraphQLSchema, text: str, max_tokens: int, rules: ValidationRules) -> DocumentNode | None:
    """The document of `text` if `LimitedParsing` and `CachedValidation` pass it without an error,
    else None; through their very caches, so that the general path then finds both done."""
    try:
        document = parsed(text, max_tokens)
    except GraphQLError:
        return None
    return None if validated(schema, text, document, rules) else document


class CachedValidation(SchemaExtension):
    """Validates with the limit rules, once per distinct document."""

    def __init__(self, rules: ValidationRules) -> None:
        super().__init__()
        self.rules = rules

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None and context.query is not None
        if getattr(context.context, "document", None) is not None:  # validated when registered, and once per worker
            context.pre_execution_errors = []
            yield
            return
        errors = validated(context.schema._schema, context.query, context.graphql_document, self.rules)
        # strawberry runs the first operation when no name is given; the GraphQL spec refuses to guess.
        # (Not cached: it depends on the request's operationName, which strawberry keeps private.)
        operations = sum(isinstance(d, OperationDefinitionNode) for d in context.graphql_document.definitions)
        if operations > 1 and getattr(context, "_provided_operation_name", None) is None:
            errors = [*errors, GraphQLError("Must provide operation name if query contains multiple operations.")]
        context.pre_execution_errors = errors
        yield
