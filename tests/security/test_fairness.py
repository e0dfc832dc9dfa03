"""Fairness under load (bench/fairness.py): while one partner floods the API from 32 connections,
with expensive pages, with hostile documents or with four keys at once, or a client floods invalid keys,
another's normal sync keeps working. Bounded in count and time; run
with -s to see the figures.
The latency bound is checked by `python -m bench.fairness`, not here: a shared machine's timings
cannot be asserted."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from api.data.models import KeyMode
from api.operators import accounts as operators
from bench.fairness import Partner, measure, served
from tests.world import DAY, World

pytestmark = pytest.mark.load


async def flooded(database_url: str, world: World, kind: str = "expensive", other_keys: tuple[str, ...] = ()):
    """The partner `full` (with `other_keys`, its further keys) floods while `no-contact` syncs practice A:
    the measure, printed, whose problems (sync failures, a flood not refused as it should be) are none."""
    practice = world.practice_id("A")
    syncing = Partner(world.keys["no-contact"], practice)
    flooding = Partner(world.keys["full"], practice, other_keys=other_keys)
    with served(database_url) as base:
        result = await measure(base, syncing, flooding, DAY, kind=kind)
    print("\n" + result.summary())
    assert result.problems() == []
    return result


async def test_a_flooding_partner_is_throttled_and_a_syncing_partner_keeps_being_served(
    database_url, world: World
):
    await flooded(database_url, world)


async def test_a_partner_flooding_hostile_documents_is_refused_and_a_syncing_partner_keeps_being_served(
    database_url, world: World
):
    result = await flooded(database_url, world, "hostile")
    assert sum(result.flood.values()) > 100, "the flood ran"


async def test_a_partner_flooding_with_four_keys_gets_one_partners_share(database_url, world: World, sync_engine):
    with Session(sync_engine) as session, session.begin():
        issued = [operators.issue_partner_key(session, "full", label="flood", mode=KeyMode.OPEN) for _ in range(3)]
    # open: the flood sends its query's text
    await flooded(database_url, world, "four-keys", other_keys=tuple(key.token for key in issued))


async def test_a_flood_of_invalid_keys_is_refused_before_the_database_and_a_syncing_partner_keeps_being_served(
    database_url, world: World
):
    result = await flooded(database_url, world, "invalid-keys")
    assert result.flood["429 RATE_LIMITED"] > 100, "the flood ran past the address's threshold"
