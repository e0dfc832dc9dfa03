"""Batch loaders: nested objects of a page are fetched in one authorized query per type,
so the number of SQL statements does not grow with the page size."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from strawberry.dataloader import DataLoader

from api.data import models
from api.errors import ApiError, ErrorCode
from api.protection.extraction import ExtractionGuard
from api.services import reads
from api.services.cursors import CursorCodec
from api.services.readable_fields import ReadableFields
from api.services.unit_of_work import UnitOfWork

__all__ = ["Loaders", "Withheld"]

K = TypeVar("K")
V = TypeVar("V")


def _in_order(
    found: Callable[[Sequence[K]], Awaitable[dict[K, V]]],
) -> Callable[[Sequence[K]], Awaitable[list[V | None]]]:
    """A batch function giving DataLoader one value (or None) per key, in the keys' order."""

    async def load(keys: Sequence[K]) -> list[V | None]:
        by_key = await found(keys)
        return [by_key.get(key) for key in keys]

    return load


class Withheld(Exception):
    """A patient of a practice whose distinct-patient refusal this response already carries: its
    field is null without a second error (not NOT_FOUND: it exists)."""


class Loaders:
    """One request's loaders, over its unit of work."""

    def __init__(
        self, uow: UnitOfWork, extraction: ExtractionGuard, fields: ReadableFields, cursors: CursorCodec
    ) -> None:
        self._uow, self._extraction, self._fields, self._cursors = uow, extraction, fields, cursors
        self.practices: DataLoader[int, models.Practice | None] = DataLoader(
            _in_order(lambda ids: reads.by_ids(uow, models.Practice, ids))
        )
        # Keyed by patient and whether it is for an appointment's reason (counted even where the
        # policy hides the record): one batch, so each practice is admitted once for both.
        self._patients_loader: DataLoader[tuple[int, bool], reads.LoadedPatient | None] = DataLoader(self._patients)
        self._refusals_told: set[int] = set()  # ids of the refusals already raised in this response
        self.practitioners: DataLoader[tuple[int, int], models.PracticeMembership | None] = DataLoader(
            _in_order(lambda keys: reads.memberships(uow, keys))
        )
        # A practice's practitioners, read once per page asked: each appointment selecting its practice's
        # ran the same query, 100 times for a page (outside review, helper 53).
        self.practitioner_pages: DataLoader[tuple[int, reads.Slice], reads.Page[models.PracticeMembership]] = (
            DataLoader(self._practitioner_pages)
        )

    async def _practitioner_pages(
        self, keys: Sequence[tuple[int, reads.Slice]]
    ) -> list[reads.Page[models.PracticeMembership] | ApiError]:
        pages: list[reads.Page[models.PracticeMembership] | ApiError] = []
        for practice_id, window in keys:
            try:
                pages.append(await reads.practitioners(self._uow, self._cursors, practice_id, window))
            except ApiError as refused:  # a bad slice or cursor: raised to the fields that asked for it
                pages.append(refused)
        return pages

    async def patient(self, patient_id: int) -> reads.LoadedPatient | None:
        """The patient, if visible. A practice refused by the distinct-patient budget is one refusal:
        its error is raised at the first of its patients, the others raise `Withheld`, for a null
        without repeating it (a page of 64 appointments would otherwise carry 64 identical errors)."""
        return await self._told_once(self._patients_loader.load((patient_id, False)))

    async def reason_of(self, patient_id: int) -> None:
        """Admits the patient of an appointment whose reason (their health data) is about to be shown,
        whether or not the policy lets the partner see their record; refuses as `patient` does."""
        await self._told_once(self._patients_loader.load((patient_id, True)))

    async def _told_once(self, loading: Awaitable[V]) -> V:
        try:
            return await loading
        except ApiError as error:
            if error.extensions.get("code") != ErrorCode.EXTRACTION_LIMIT_EXCEEDED:
                raise
            if id(error) in self._refusals_told:
                raise Withheld from None
            self._refusals_told.add(id(error))
            raise

    async def _patients(self, keys: Sequence[tuple[int, bool]]) -> list[reads.LoadedPatient | ApiError | None]:
        """The visible patients, and the hidden ones whose reason is shown, each practice's new ones
        admitted by the distinct-patient budget first."""
        uow, extraction = self._uow, self._extraction
        found, new = await reads.patients(uow, extraction, await self._fields.horizons(), {i for i, _ in keys})
        hidden = {i for i, for_reason in keys if for_reason and i not in found}
        concerned = await reads.concerned(uow, extraction, hidden) if hidden else {}
        practice_of = {i: found[i].row.practice_id for i in new}
        practice_of |= {i: practice for i, (practice, free) in concerned.items() if not free}
        refused = await self._admit(practice_of)
        return [
            refused.get(found[i].row.practice_id, found[i]) if i in found
            else refused.get(concerned[i][0]) if i in concerned
            else None
            for i, _ in keys
        ]  # fmt: skip

    async def _admit(self, practice_of: dict[int, int]) -> dict[int, ApiError]:
        """Admits the patients new to the budget, practice by practice; the practices refused."""
        uow = self._uow
        by_practice: dict[int, set[int]] = defaultdict(set)
        for patient_id, practice_id in practice_of.items():
            by_practice[practice_id].add(patient_id)
        refused: dict[int, ApiError] = {}
        partner_id, key_id = uow.principal.partner_id, uow.principal.key_id
        for practice_id, patient_ids in by_practice.items():
            if uow.halted is not None:  # quarantined by an earlier batch (another mutation or depth)
                refused[practice_id] = uow.halted
                continue
            try:
                async with uow.transaction() as session:
                    await self._extraction.admit(
                        session, partner_id, key_id, practice_id, patient_ids, uow.request_time, uow.commit, uow.keep
                    )
            except ApiError as error:
                refused[practice_id] = error
                if error.extensions.get("quarantined"):
                    uow.halted = error
        return refused
