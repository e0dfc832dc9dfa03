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


async def test_a_partner_flooding_with_four_keys_gets_one_partners_share(database_url, world: World, sync_engine):
    practice = world.practice_id("A")
    with Session(sync_engine) as session, session.begin():
        issued = [operators.issue_partner_key(session, "full", label="flood", mode=KeyMode.OPEN) for _ in range(3)]
        others = tuple(key.token for key in issued)  # open: the flood sends its query's text
    syncing = Partner(world.keys["no-contact"], practice)
    flooding = Partner(world.keys["full"], practice, other_keys=others)
    with served(database_url) as base:
        result = await measure(base, syncing, flooding, DAY, kind="four-keys")
    print("\n" + result.summary())
    assert result.problems() == []


async def test_a_flood_of_invalid_keys_is_refused_before_the_database_and_a_syncing_partner_keeps_being_served(
    database_url, world: World
):
    practice = world.practice_id("A")
    syncing, flooding = Partner(world.keys["no-contact"], practice), Partner(world.keys["full"], practice)
    with served(database_url) as base:
        result = await measure(base, syncing, flooding, DAY, kind="invalid-keys")
    print("\n" + result.summary())
    assert result.problems() == []
    assert result.flood["429 RATE_LIMITED"] > 100, "the flood ran past the address's threshold"
