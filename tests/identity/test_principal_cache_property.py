"""Property: for any sequence of operator changes, clock moves and requests, over two workers, a
request is served by a worker with the key cache iff it is served by one without (same status,
same error codes)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.clock import SettableClock
from api.data.models import KeyMode, Partner, PartnerKey, PartnerStatus
from api.timeutil import utcnow
from tests.client import ApiClient
from tests.identity.test_principal_cache import VIEWER
from tests.identity.workers import heard

PARTNERS = ("full", "reader")
_CLOCK = SettableClock(utcnow())  # shared by the workers of every example (hypothesis reruns the test body)


def key_change(**values: Any) -> Any:
    return lambda partner: update(PartnerKey).where(PartnerKey.partner_id == partner).values(**values)


def partner_change(**values: Any) -> Any:
    return lambda partner: update(Partner).where(Partner.id == partner).values(**values)


CHANGES = {
    "revoke": key_change(revoked_at=utcnow()),
    "unrevoke": key_change(revoked_at=None),
    "quarantine": key_change(quarantined_at=utcnow()),
    "release": key_change(quarantined_at=None),
    "expire soon": lambda partner: key_change(expires_at=_CLOCK() + timedelta(seconds=30))(partner),
    "never expire": key_change(expires_at=None),
    "trusted": key_change(mode=KeyMode.TRUSTED),
    "open": key_change(mode=KeyMode.OPEN),
    "suspend": partner_change(status=PartnerStatus.SUSPENDED),
    "activate": partner_change(status=PartnerStatus.ACTIVE),
    "tokens required": partner_change(tokens_required=True),
    "keys allowed": partner_change(tokens_required=False),
    "budget": partner_change(budget_capacity=1000),
}
RESET = ("unrevoke", "release", "never expire", "open", "activate", "keys allowed")

STEPS = st.lists(
    st.one_of(
        # weighted toward requests with the right secret: a change is caught by the request after it
        st.tuples(st.just("request"), st.sampled_from(PARTNERS), st.sampled_from([False, False, False, True])),
        st.tuples(st.just("request"), st.sampled_from(PARTNERS), st.just(False)),
        st.tuples(st.just("change"), st.sampled_from(PARTNERS), st.sampled_from(sorted(CHANGES))),
        # within and past the last use's precision (a minute), and past "expire soon"
        st.tuples(st.just("seconds"), st.sampled_from([40, 180])),
    ),
    min_size=3,
    max_size=15,
)


@pytest.fixture
async def cached_and_reference(workers) -> tuple[list[ApiClient], ApiClient]:
    """Two workers with the cache and one without, kept for every example (as the database is)."""
    unscreened = {"clock": _CLOCK, "failed_requests_per_address": 1_000_000}  # wrong secrets are part of the test
    (reference,) = await workers(1, principal_cache=False, **unscreened)
    return await workers(2, **unscreened), reference


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
async def test_a_request_is_served_with_the_cache_iff_without_it(cached_and_reference, world, sync_engine, steps):
    cached, reference = cached_and_reference
    with Session(sync_engine) as session:
        ids = {name: session.scalar(select(Partner.id).where(Partner.name == name)) for name in PARTNERS}

    def apply(*names: str, partner: str) -> None:
        with Session(sync_engine) as session, session.begin():
            for name in names:
                session.execute(CHANGES[name](ids[partner]))

    for partner in PARTNERS:
        await heard(cached, lambda partner=partner: apply(*RESET, partner=partner))
    for step in steps:
        if step[0] == "change":
            await heard(cached, lambda step=step: apply(step[2], partner=step[1]))
        elif step[0] == "seconds":
            _CLOCK.advance(seconds=step[1])
        else:
            _, partner, wrong_secret = step
            key = world.keys[partner]
            key = key[:-1] + ("A" if key[-1] != "A" else "B") if wrong_secret else key
            expected = await reference.query(key, VIEWER)
            for worker in cached:
                got = await worker.query(key, VIEWER)
                assert (got.status, got.codes) == (expected.status, expected.codes), step
