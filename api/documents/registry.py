"""The registered documents of each partner, kept by every worker between requests: a document
is read, parsed and validated once, then run by id without parsing, validation or pricing.

Entries are keyed by the partner's documents version, which a database trigger bumps on every
change to its documents (migration 02fafd39984f) and which authentication reads with the key, as
the grants' cache does (api/identity/grant_cache.py): a removed document is refused by every
worker on the partner's very next request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from graphql import DocumentNode, GraphQLSchema, OperationDefinitionNode
from sqlalchemy import Result, Select, select

from api.compiled.plan import Fallback, Plan, compile_plan
from api.data.models import TrustedDocument
from api.documents.analysis import parsed_and_valid
from api.protection.cost import OPERATION_COST
from api.protection.shape_limits import ValidationRules
from api.settings import Settings

__all__ = ["DocumentRegistry", "RegisteredDocument"]

MAX_ENTRIES = 4096  # documents, all partners together


@dataclass(frozen=True)
class RegisteredDocument:
    """A partner's registered document, ready to run."""

    document_id: str
    text: str
    document: DocumentNode
    cost: int  # worst case, charged as the requested cost
    fields: tuple[str, ...]
    scopes: tuple[str, ...]
    plan: Plan | Fallback  # compiled when loaded (api/compiled/), or why it runs on the general executor

    @property
    def operation(self) -> OperationDefinitionNode:
        return next(d for d in self.document.definitions if isinstance(d, OperationDefinitionNode))

    @property
    def operation_name(self) -> str | None:
        name = self.operation.name
        return name.value if name else None


class DocumentRegistry:
    def __init__(
        self, schema: GraphQLSchema, settings: Settings, rules: ValidationRules, max_entries: int = MAX_ENTRIES
    ) -> None:
        self.schema, self.settings, self.rules, self.max_entries = schema, settings, rules, max_entries
        self._entries: dict[tuple[int, int, str], RegisteredDocument] = {}

    async def find(
        self,
        execute: Callable[[Select[Any]], Awaitable[Result[Any]]],
        partner_id: int,
        version: int,
        document_id: str,
    ) -> RegisteredDocument | None:
        """The partner's live document of that id, or None. Raises DocumentRefused when it no longer
        validates against the schema (a field it reads was removed since it was registered)."""
        key = (partner_id, version, document_id)
        found = self._entries.get(key)
        if found is not None:
            return found
        statement = select(TrustedDocument).where(
            TrustedDocument.partner_id == partner_id,
            TrustedDocument.document_id == document_id,
            TrustedDocument.revoked_at.is_(None),
        )
        row = (await execute(statement)).scalar_one_or_none()
        if row is None:
            return None  # not cached: an unknown id costs its caller one indexed read, within the key's gate
        document = parsed_and_valid(self.schema, row.text, self.settings, self.rules)
        found = RegisteredDocument(
            row.document_id,
            row.text,
            document,
            max(OPERATION_COST, row.cost),  # priced before the floor, a document stored at 0 ran free
            tuple(row.fields.split()),
            _scopes(row.scopes),
            compile_plan(self.schema, document),
        )
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # older versions linger until then; bounded either way
        self._entries[key] = found
        return found


def _scopes(stored: str) -> tuple[str, ...]:
    return tuple(s for s in stored.split("\n") if s)
