"""Which fields the partner may read at each practice: the policy's field rules on its grants there."""

from __future__ import annotations

from collections.abc import Iterable

from api.identity.grant_cache import GrantCache
from api.services.unit_of_work import UnitOfWork
from authz.engine import Authorizer

__all__ = ["ReadableFields"]


class ReadableFields:
    """"Type.field" names readable at each practice, decided by the policy on the partner's grants
    there; computed once per practice and request, from grants cached per worker."""

    def __init__(self, uow: UnitOfWork, authorizer: Authorizer, grants: GrantCache) -> None:
        self._uow, self._authorizer, self._grants = uow, authorizer, grants
        self._fields: dict[int, frozenset[str]] = {}

    async def at_practices(self, practice_ids: Iterable[int]) -> dict[int, frozenset[str]]:
        missing = set(practice_ids) - self._fields.keys()
        if missing:
            principal, actor = self._uow.identity.principal, self._uow.identity.actor
            grants = await self._grants.at_practices(self._uow.execute, principal.partner_id, principal.grants_version, missing)
            for practice_id, at_practice in grants.items():
                self._fields[practice_id] = frozenset().union(*(self._authorizer.readable_fields(actor, g) for g in at_practice))
        return self._fields

    async def at(self, practice_id: int) -> frozenset[str]:
        return (await self.at_practices([practice_id]))[practice_id]
