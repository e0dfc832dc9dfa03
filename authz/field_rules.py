"""What the field rules of the policy (authz/fields.polar) say of a document, before it runs.

Registering a trusted document, and a dry run, ask of every "Type.field" it selects: could a grant
of this partner ever let it be read? The policy answers for each grant (`Authorizer.readable_fields`
inside the reading horizon); these rules classify what it does not cover: a field of a type free of
practice data (`structural_type`, `own_account_type`) is always readable, and a refused field is
explained by the scopes its `field_needs_scope` lines name (none: never readable). Read once from
the policy's facts: the application never restates them.
"""

from __future__ import annotations

from dataclasses import dataclass

from oso import Oso
from polar import Variable
from polar.exceptions import PolarRuntimeError

__all__ = ["FieldRules", "Unreadable"]


@dataclass(frozen=True)
class Unreadable:
    """A field no grant of the partner allows: `scopes` are those that would (empty: none ever)."""

    field: str
    scopes: frozenset[str]
    any_grant: bool = False  # readable through any live grant, and the partner has none

    def __str__(self) -> str:
        if self.any_grant:
            return f"{self.field} needs a live grant, and the partner has none"
        if not self.scopes:
            return f"{self.field} is never readable by a partner"
        scopes = " or ".join(sorted(self.scopes))
        return f"{self.field} needs the scope {scopes}, which none of the partner's grants holds"


def _facts(oso: Oso, rule: str, arity: int) -> list[tuple[str, ...]]:
    variables = [Variable(f"x{i}") for i in range(arity)]
    try:
        results = oso.query_rule(rule, *variables, accept_expression=False)
        return [tuple(r["bindings"][f"x{i}"] for i in range(arity)) for r in results]
    except PolarRuntimeError:  # a policy without that rule (e.g. a row-rules file on its own)
        return []


class FieldRules:
    """The policy's field classification, as sets."""

    def __init__(self, oso: Oso) -> None:
        free = _facts(oso, "structural_type", 1) + _facts(oso, "own_account_type", 1)
        self.free_types = frozenset(t for (t,) in free)
        self.any_grant = frozenset(f for (f,) in _facts(oso, "field_with_any_grant", 1))
        needs: dict[str, set[str]] = {}
        for field, scope in _facts(oso, "field_needs_scope", 2):
            needs.setdefault(field, set()).add(scope)
        self.needs = {field: frozenset(scopes) for field, scopes in needs.items()}

    def is_free(self, field: str) -> bool:
        return field.partition(".")[0] in self.free_types

    def scopes_of(self, field: str) -> frozenset[str]:
        """The scopes any one of which lets `field` be read (empty for a free or any-grant field)."""
        return self.needs.get(field, frozenset())

    def unreadable(self, field: str, readable: frozenset[str]) -> Unreadable | None:
        """Why `field` cannot be read by a partner whose grants, together, let it read `readable`
        (the policy's answer for each of them), or None when it can."""
        if self.is_free(field) or field in readable:
            return None
        return Unreadable(field, self.scopes_of(field), any_grant=field in self.any_grant)
