"""Batch loaders: nested objects of a page are fetched in one authorized query per type,
so the number of SQL statements does not grow with the page size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strawberry.dataloader import DataLoader

from api import models, reads
from api.context import RequestContext


class Loaders:
    def __init__(self, ctx: RequestContext) -> None:
        self.practices = DataLoader(self._by_ids(ctx, models.Practice))
        self.patients = DataLoader(self._by_ids(ctx, models.Patient))
        self.practitioners = DataLoader(self._memberships(ctx))

    @staticmethod
    def _by_ids(ctx: RequestContext, model: type[Any]):  # type: ignore[no-untyped-def]
        async def load(ids: Sequence[int]) -> list[Any]:
            found = await reads.by_ids(ctx, model, ids)
            return [found.get(i) for i in ids]

        return load

    @staticmethod
    def _memberships(ctx: RequestContext):  # type: ignore[no-untyped-def]
        async def load(keys: Sequence[tuple[int, int]]) -> list[models.PracticeMembership | None]:
            found = await reads.memberships(ctx, keys)
            return [found.get(key) for key in keys]

        return load
