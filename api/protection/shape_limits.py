"""Shape limits: checked once per distinct document, before anything runs, and cached with it.

Each refusal is a GraphQL error with `extensions.code = BAD_USER_INPUT`, the name of the limit
and its maximum, answered with HTTP 400. Limits that depend on variables (page sizes, date
windows, cost) are checked at execution time instead, so cached documents are re-checked
with every request's variables.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    NoUnusedFragmentsRule,
    OperationDefinitionNode,
    StringValueNode,
    ValidationRule,
    specified_rules,
    validate,
)
from graphql.language.parser import MAX_NESTING_DEPTH as MAX_PARSER_NESTING
from graphql.validation.rules.max_introspection_depth_rule import MAX_LIST_DEPTH as MAX_INTROSPECTION_LIST_DEPTH
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from api.errors import ErrorCode
from api.protection.rules import (
    max_aliases_rule,
    max_depth_rule,
    max_directives_rule,
    max_field_repeats_rule,
    max_operations_rule,
    max_selections_rule,
)
from api.protection.rules._measure import limit_error
from api.settings import Settings

VALIDATION_CACHE_SIZE = 512
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
            # The specification's own, run first too: the limits above measure each operation as
            # expanded, and a fragment no operation spreads would reach graphql-core's pairwise
            # comparison of merged fields unmeasured (OverlappingFieldsCanBeMergedRule walks every
            # fragment definition).
            NoUnusedFragmentsRule,
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


class LimitedParsing(ParserCache):
    """strawberry's parser cache, parsing at most `max_tokens` lexical tokens (graphql-core's parser
    option, which MaxTokensLimiter sets), with the refusal naming the limit as the other shape limits do.
    One extension, not MaxTokensLimiter beside ParserCache: the parse raises inside this hook, the only
    place where its error can be caught."""

    def __init__(self, max_tokens: int, maxsize: int) -> None:
        super().__init__(maxsize=maxsize)
        self.max_tokens = max_tokens

    def on_parse(self) -> Iterator[None]:
        prepared = getattr(self.execution_context.context, "document", None)
        if prepared is not None:  # a registered document, parsed once per worker (api/documents/registry.py)
            self.execution_context.graphql_document = prepared.document
            yield
            return
        self.execution_context.parse_options["max_tokens"] = self.max_tokens
        try:
            yield from super().on_parse()
        except GraphQLError as error:
            if TOO_MANY_TOKENS.search(error.message):
                error.extensions = {**(error.extensions or {}), "limit": "tokens", "maximum": self.max_tokens}
            elif TOO_DEEP_TO_PARSE in error.message:
                error.extensions = {**(error.extensions or {}), "limit": "nesting", "maximum": MAX_PARSER_NESTING}
            raise


class _ValidationCache:
    """Validation errors per query text (the parser cache returns the same document for it), so a
    hit costs one string hash rather than hashing the whole document tree."""

    def __init__(self, size: int = VALIDATION_CACHE_SIZE) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[str, ValidationRules], list[GraphQLError]] = OrderedDict()

    def validate(
        self, schema: GraphQLSchema, query: str, document: DocumentNode, rules: ValidationRules
    ) -> list[GraphQLError]:
        key = (query, rules)
        errors = self.entries.get(key)
        if errors is None:
            # A document over a shape limit is refused before the other rules walk it.
            errors = validate(schema, document, rules.shape)
            if not errors:
                # Suggestions ("did you mean") would describe the schema to whoever probes it.
                errors = [
                    _named(e)
                    for e in validate(schema, document, rules.spec, max_errors=MAX_ERRORS, hide_suggestions=True)
                ]
            self.entries[key] = errors
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)
        else:
            self.entries.move_to_end(key)
        return errors


_cache = _ValidationCache()


def checked_document(
    schema: GraphQLSchema, text: str, max_tokens: int, rules: ValidationRules, parser_cache_size: int
) -> DocumentNode | None:
    """The document of `text` if `LimitedParsing` and `CachedValidation` pass it without an error,
    else None; through their very caches, so that the general path then finds both done."""
    try:
        parse = ParserCache(maxsize=parser_cache_size).cached_parse_document
        document: DocumentNode = parse(text, max_tokens=max_tokens)
    except GraphQLError:
        return None
    return None if _cache.validate(schema, text, document, rules) else document


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
        errors = _cache.validate(context.schema._schema, context.query, context.graphql_document, self.rules)
        # strawberry runs the first operation when no name is given; the GraphQL spec refuses to guess.
        # (Not cached: it depends on the request's operationName, which strawberry keeps private.)
        operations = sum(isinstance(d, OperationDefinitionNode) for d in context.graphql_document.definitions)
        if operations > 1 and getattr(context, "_provided_operation_name", None) is None:
            errors = [*errors, GraphQLError("Must provide operation name if query contains multiple operations.")]
        context.pre_execution_errors = errors
        yield
