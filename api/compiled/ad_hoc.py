"""Compiled plans for ad-hoc documents: an open key's query text runs through a plan too.

A text is compiled once per worker, after it passes the parsing and validation of the general path
(api/protection/shape_limits.py `checked_document`, through their very caches, so a text refused
there is refused by the general path with its own errors); a text that is invalid or has no plan
is remembered as such and runs on the general executor. Plans are kept by text in a bounded LRU:
texts a client sends once cost one parse and validation, as they would anyway. Unlike a registered
document, priced once at its worst case, an ad-hoc document is priced per request with its
variables, by the same function as the general path (api/protection/cost.py `requested_cost`).
"""

from __future__ import annotations

from cachetools import LRUCache
from graphql import GraphQLSchema

from api.compiled.plan import Plan, compile_plan
from api.protection.shape_limits import ValidationRules, checked_document

__all__ = ["AdHocPlans"]

MAX_TEXT = 1_000_000  # characters of query text kept, all plans together (a plan is about the text's size again)


class AdHocPlans:
    def __init__(self, schema: GraphQLSchema, max_tokens: int, rules: ValidationRules) -> None:
        self.schema, self.max_tokens, self.rules = schema, max_tokens, rules
        self._plans: LRUCache[str, tuple[Plan | None, int]] = LRUCache(MAX_TEXT, getsizeof=lambda entry: entry[1])

    def plan_of(self, text: str) -> Plan | None:
        """The text's plan, or None: it does not parse or validate, or it runs on the general executor."""
        found = self._plans.get(text)
        if found is None:
            document = checked_document(self.schema, text, self.max_tokens, self.rules)
            plan = compile_plan(self.schema, document) if document is not None else None
            found = (plan if isinstance(plan, Plan) else None, max(1, len(text)))
            if found[1] <= MAX_TEXT:
                self._plans[text] = found
        return found[0]
