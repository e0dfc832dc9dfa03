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

MAX_ENTRIES = 4096  # partners (each entry holds all of one partner's grants)


def _detached_copy(grant: Grant) -> Grant:
    """A copy owned by no session: shared by concurrent requests, it never loads or expires."""
    return Grant(**{column.key: getattr(grant, column.key) for column in Grant.__mapper__.column_attrs})


class GrantCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[int, int], dict[int, tuple[Grant, ...]]] = {}

    async def of_partner(
        self, execute: Callable[[Select[Any]], Awaitable[Result[Any]]], partner_id: int, version: int
    ) -> dict[int, tuple[Grant, ...]]:
        """Every grant of the partner (live or not), by practice: one statement when not cached
        under this version. All of them at once: each request needs every practice's reading
        horizon before its first query (api.services.horizon), and a partner has tens of grants."""
        found = self._entries.get((partner_id, version))
        if found is None:
            fetched: dict[int, list[Grant]] = {}
            for grant in (await execute(select(Grant).where(Grant.partner_id == partner_id))).scalars():
                fetched.setdefault(grant.practice_id, []).append(_detached_copy(grant))
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # older versions linger until then; bounded either way
            found = self._entries[(partner_id, version)] = {p: tuple(grants) for p, grants in fetched.items()}
        return found

    async def at_practices(
        self,
        execute: Callable[[Select[Any]], Awaitable[Result[Any]]],
        partner_id: int,
        version: int,
        practice_ids: Collection[int],
    ) -> dict[int, tuple[Grant, ...]]:
        """The partner's grants (live or not) at each practice."""
        grants = await self.of_partner(execute, partner_id, version)
        return {practice_id: grants.get(practice_id, ()) for practice_id in practice_ids}
