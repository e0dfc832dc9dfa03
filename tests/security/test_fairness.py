"""Fairness under load (bench/fairness.py): while one partner floods the API from 32 connections,
with expensive pages or with hostile documents, another's normal sync keeps working. Bounded in count and time; run
with -s to see the figures.
The latency bound is checked by `python -m bench.fairness`, not here: a shared machine's timings
cannot be asserted."""

from __future__ import annotations

import pytest

from bench.fairness import Partner, measure, served
from tests.world import DAY, World

pytestmark = pytest.mark.load


async def test_a_flooding_partner_is_throttled_and_a_syncing_partner_keeps_being_served(
    database_url, world: World
):
    practice = world.practice_id("A")
    syncing, flooding = Partner(world.keys["no-contact"], practice), Partner(world.keys["full"], practice)
    with served(database_url) as base:
        result = await measure(base, syncing, flooding, DAY)
    print("\n" + result.summary())
    assert result.problems() == []


async def test_a_partner_flooding_hostile_documents_is_refused_and_a_syncing_partner_keeps_being_served(
    database_url, world: World
):
    practice = world.practice_id("A")
    syncing, flooding = Partner(world.keys["no-contact"], practice), Partner(world.keys["full"], practice)
    with served(database_url) as base:
        result = await measure(base, syncing, flooding, DAY, kind="hostile")
    print("\n" + result.summary())
    assert result.problems() == []
    assert sum(result.flood.values()) > 100, "the flood ran"
