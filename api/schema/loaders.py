"""Batch loaders: nested objects of a page are fetched in one authorized query per type,
so the number of SQL statements does not grow with the page size."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from strawberry.dataloader import DataLoader

from api.data import models

from api.services import reads
from api.services.context import RequestContext
from api.errors import ApiError


class Loaders:
    def __init__(self, ctx: RequestContext) -> None:
        self.practices = DataLoader(self._by_ids(ctx, models.Practice))
        self.patients = DataLoader(self._patients(ctx))
        self.practitioners = DataLoader(self._memberships(ctx))

    @staticmethod
    def _by_ids(ctx: RequestContext, model: type[Any]):  # type: ignore[no-untyped-def]
        async def load(ids: Sequence[int]) -> list[Any]:
            found = await reads.by_ids(ctx, model, ids)
            return [found.get(i) for i in ids]

        return load

    @staticmethod
    def _patients(ctx: RequestContext):  # type: ignore[no-untyped-def]
        """Patients, each practice's batch admitted by the distinct-patient budget first."""

        async def load(ids: Sequence[int]) -> list[models.Patient | ApiError | None]:
            found, new = await reads.patients(ctx, ids)
            by_practice: dict[int, set[int]] = defaultdict(set)
            for patient_id in new:
                by_practice[found[patient_id].practice_id].add(patient_id)
            refused: dict[int, ApiError] = {}
            partner_id, key_id = ctx.principal.partner_id, ctx.principal.key_id
            halted: ApiError | None = None  # a quarantined key is served nothing more
            for practice_id, patient_ids in by_practice.items():
                if halted is not None:
                    refused[practice_id] = halted
                    continue
                try:
                    async with ctx.transaction() as session:
                        await ctx.extraction.admit(session, partner_id, key_id, practice_id, patient_ids, ctx.request_time)
                except ApiError as error:
                    refused[practice_id] = error
                    halted = error if error.extensions.get("quarantined") else None
            return [
                refused.get(found[i].practice_id, found[i]) if i in found else None
                for i in ids
            ]

        return load

    @staticmethod
    def _memberships(ctx: RequestContext):  # type: ignore[no-untyped-def]
        async def load(keys: Sequence[tuple[int, int]]) -> list[models.PracticeMembership | None]:
            found = await reads.memberships(ctx, keys)
            return [found.get(key) for key in keys]

        return load
