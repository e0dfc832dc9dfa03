"""What the compiled plans' tests share."""

from __future__ import annotations

from collections import Counter

import pytest

from api.compiled import serve


@pytest.fixture
def plan_runs(monkeypatch):
    """How many requests ran a compiled plan (`plan`), and how many of them read an appointments page
    in one statement (`page`, not declined to the resolvers): a test that never reaches them would prove nothing."""
    runs: Counter[str] = Counter()
    execute_plan, read_page = serve.execute_plan, serve.read_page

    async def counted_plan(*args):  # type: ignore[no-untyped-def]
        runs["plan"] += 1
        return await execute_plan(*args)

    async def counted_page(*args):  # type: ignore[no-untyped-def]
        result = await read_page(*args)
        runs["page"] += 1
        return result

    monkeypatch.setattr(serve, "execute_plan", counted_plan)
    monkeypatch.setattr(serve, "read_page", counted_page)
    return runs
