"""Which fields the partner may read at each practice: the policy's field rules on its grants there,
for a record inside the grant's reading horizon and for one outside it (api.services.horizon)."""

from __future__ import annotations

from collections.abc import Iterable

from api.identity.grant_cache import GrantCache
from api.services.horizon import Horizons, RecordFields
from api.services.unit_of_work import UnitOfWork
from authz.engine import Authorizer

__all__ = ["ReadableFields"]


class ReadableFields:
    """"Type.field" names readable at each practice, decided by the policy on the partner's grants
    there; computed once per practice, side of the horizon and request, from grants cached per worker."""

    def __init__(self, uow: UnitOfWork, authorizer: Authorizer, grants: GrantCache) -> None:
        self._uow, self._authorizer, self._grants = uow, authorizer, grants
        self._fields: dict[tuple[int, bool], frozenset[str]] = {}
        self._horizons: Horizons | None = None

    async def at_practices(self, practice_ids: Iterable[int], in_horizon: bool = False) -> dict[int, frozenset[str]]:
        """Of a record inside the reading horizon (`in_horizon`) or outside it (the default: deny
        unless shown inside)."""
        wanted = set(practice_ids)
        missing = {p for p in wanted if (p, in_horizon) not in self._fields}
        if missing:
            principal, actor = self._uow.identity.principal, self._uow.identity.actor
            grants = await self._grants.at_practices(
                self._uow.execute, principal.partner_id, principal.grants_version, missing
            )
            for practice_id, at_practice in grants.items():
                self._fields[(practice_id, in_horizon)] = frozenset().union(
                    *(self._authorizer.readable_fields(actor, g, in_horizon=in_horizon) for g in at_practice)
                )
        return {p: self._fields[(p, in_horizon)] for p in wanted}

    async def anywhere(self) -> frozenset[str]:
        """What some grant of the partner lets it read (inside the reading horizon): a dry run's
        question, whatever the practice (api/documents/dry_run.py)."""
        principal = self._uow.identity.principal
        grants = await self._grants.of_partner(self._uow.execute, principal.partner_id, principal.grants_version)
        practices = await self.at_practices(grants, in_horizon=True)
        return frozenset().union(*practices.values())

    async def at(self, practice_id: int, in_horizon: bool = False) -> frozenset[str]:
        return (await self.at_practices([practice_id], in_horizon))[practice_id]

    async def horizons(self) -> Horizons:
        """Where each of the partner's grants draws its reading horizon at this request's time."""
        if self._horizons is None:
            principal = self._uow.identity.principal
            grants = await self._grants.of_partner(self._uow.execute, principal.partner_id, principal.grants_version)
            self._horizons = Horizons.of(
                (g for at_practice in grants.values() for g in at_practice), self._uow.request_time
            )
        return self._horizons

    async def record_fields(self, practice_ids: Iterable[int]) -> dict[int, RecordFields]:
        """For appointments and patients: what is readable at each practice inside and outside the
        reading horizon there, and its bounds at this request's time."""
        wanted = set(practice_ids)
        horizons = await self.horizons()
        inside, outside = await self.at_practices(wanted, True), await self.at_practices(wanted, False)
        return {p: RecordFields(inside[p], outside[p], horizons.bounds.get(p)) for p in wanted}

    async def record_fields_at(self, practice_id: int) -> RecordFields:
        return (await self.record_fields([practice_id]))[practice_id]
