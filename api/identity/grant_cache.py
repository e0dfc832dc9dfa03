"""Each partner's grants, kept between requests: field rules need them on every request, and
they change rarely.

Entries are keyed by the partner's grants version, which a database trigger bumps on every change
to its grants (however it is made) and which authentication reads with the key: a changed grant
is read anew by every worker on the partner's next request. Row rules do not use this cache:
their SQL reads the grants itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

from sqlalchemy import Result, Select, select

from api.data.models import Grant

MAX_ENTRIES = 16384


def _detached_copy(grant: Grant) -> Grant:
    """A copy owned by no session: shared by concurrent requests, it never loads or expires."""
    return Grant(**{column.key: getattr(grant, column.key) for column in Grant.__mapper__.column_attrs})


class GrantCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[int, int, int], tuple[Grant, ...]] = {}

    async def at_practices(
        self,
        execute: Callable[[Select[Any]], Awaitable[Result[Any]]],
        partner_id: int,
        version: int,
        practice_ids: Collection[int],
    ) -> dict[int, tuple[Grant, ...]]:
        """The partner's grants (live or not) at each practice, read from the database only for
        practices not cached under this version."""
        found = {p: self._entries[(partner_id, version, p)] for p in practice_ids if (partner_id, version, p) in self._entries}
        missing = set(practice_ids) - found.keys()
        if missing:
            fetched: dict[int, list[Grant]] = {p: [] for p in missing}
            statement = select(Grant).where(Grant.partner_id == partner_id, Grant.practice_id.in_(missing))
            for grant in (await execute(statement)).scalars():
                fetched[grant.practice_id].append(_detached_copy(grant))
            if len(self._entries) + len(missing) > self.max_entries:
                self._entries.clear()  # older versions linger until then; bounded either way
            for practice_id, grants in fetched.items():
                found[practice_id] = self._entries[(partner_id, version, practice_id)] = tuple(grants)
        return found
