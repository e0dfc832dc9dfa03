"""Before authentication (api/protection/address_limiter.py): a client address that keeps failing to
authenticate is refused at once, at no database cost, its memory is bounded, and only a configured
proxy may name the client in X-Forwarded-For."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request

from api.data.models import AccessRecord
from api.protection.address_limiter import AddressLimiter
from tests.statements import statements_sent

BAD_KEY = "pak_000000000000_" + "x" * 43


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request_from(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "client": (peer, 1234), "headers": headers, "method": "POST", "path": "/"})


def test_an_address_is_refused_past_its_failures_until_its_window_ends():
    clock = Clock()
    limiter = AddressLimiter(failures=3, window=60, max_addresses=100, clock=clock)
    for _ in range(3):
        assert limiter.refusal("203.0.113.7") is None
        limiter.failed("203.0.113.7")
    assert limiter.refusal("203.0.113.7") == 60
    assert limiter.refusal("203.0.113.8") is None  # another address is not affected
    clock.now += 45
    assert limiter.refusal("203.0.113.7") == 15  # the window counts from the first failure
    clock.now += 15
    assert limiter.refusal("203.0.113.7") is None


def test_memory_is_bounded_whatever_the_number_of_addresses():
    limiter = AddressLimiter(failures=1, window=60, max_addresses=50)
    for i in range(5000):
        limiter.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(limiter._failures) == 50


def test_an_ipv6_client_is_counted_by_its_64_block():
    limiter = AddressLimiter(failures=2, window=60, max_addresses=100)
    limiter.failed("2001:db8:1:2::1")
    limiter.failed("2001:db8:1:2:ffff::9")  # the same subscriber, another address
    assert limiter.refusal("2001:db8:1:2::abcd") is not None
    assert limiter.refusal("2001:db8:1:3::1") is None


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy():
    untrusting = AddressLimiter(failures=1, window=60, max_addresses=10)
    assert untrusting.client(request_from("198.51.100.1", "203.0.113.9")) == "198.51.100.1"
    trusting = AddressLimiter(failures=1, window=60, max_addresses=10, trusted_proxies=["10.0.0.0/8"])
    assert trusting.client(request_from("10.0.0.2", "203.0.113.9")) == "203.0.113.9"
    # what the client wrote itself (to the left of what the proxies added) is never believed
    assert trusting.client(request_from("10.0.0.2", "1.2.3.4, 203.0.113.9, 10.0.0.3")) == "203.0.113.9"
    assert trusting.client(request_from("10.0.0.2", "1.2.3.4", "203.0.113.9")) == "203.0.113.9"
    assert trusting.client(request_from("10.0.0.2", "not-an-address")) == "10.0.0.2"
    assert trusting.client(request_from("198.51.100.1", "203.0.113.9")) == "198.51.100.1"  # not from the proxy


OUTSIDE = st.ip_addresses(v=4).filter(lambda a: not a.is_private).map(str)


@given(st.lists(OUTSIDE, max_size=5), st.booleans(), OUTSIDE)
def test_a_client_cannot_choose_its_address(forwarded, through_proxy, elsewhere):
    limiter = AddressLimiter(failures=1, window=60, max_addresses=10, trusted_proxies=["10.0.0.0/8"])
    peer = "10.0.0.2" if through_proxy else elsewhere
    client = limiter.client(request_from(peer, ", ".join(forwarded)))
    # through the proxy: the address it saw (the last one it added); otherwise the peer, whatever the header says
    assert client == (forwarded[-1] if through_proxy and forwarded else peer)


async def test_a_flood_of_bad_keys_costs_no_database_work_past_the_threshold(make_api, world, sync_engine):
    api = make_api(failed_requests_per_address=5)
    app = api.http._transport.app  # type: ignore[attr-defined]
    with Session(sync_engine) as session:
        before = session.scalar(select(func.count()).select_from(AccessRecord))
    with statements_sent(app) as first:
        for _ in range(5):
            assert (await api.query(BAD_KEY, "{ viewer { name } }")).status == 401
    assert first  # below the threshold each is looked up and recorded
    with statements_sent(app) as flood:
        for i in range(200):
            response = await api.query(f"pak_{i:012d}_" + "y" * 43, "{ viewer { name } }")
            assert response.status == 429 and response.codes == {"RATE_LIMITED"}
    assert flood == []  # not one query: no key lookup, no ledger row
    assert 1 <= int(response.headers["retry-after"]) <= 60
    with Session(sync_engine) as session:
        assert session.scalar(select(func.count()).select_from(AccessRecord)) == before + 5


async def test_requests_refused_before_their_body_count_and_stop_at_the_threshold(make_api, world, sync_engine):
    """A 406 (an Accept of neither type) or a 413 (a body too large) without a valid key is a failure
    of its address too, and once it is refused they write no ledger row either."""
    api = make_api(failed_requests_per_address=4, max_body_bytes=1000)
    app = api.http._transport.app  # type: ignore[attr-defined]
    with Session(sync_engine) as session:
        before = session.scalar(select(func.count()).select_from(AccessRecord))
    unacceptable = {"Accept": "text/plain", "Authorization": f"Bearer {BAD_KEY}"}

    async def not_acceptable() -> int:
        return (await api.http.post("/graphql", json={"query": "{ viewer { id } }"}, headers=unacceptable)).status_code

    async def too_large() -> int:
        return (await api.http.post("/graphql", content=b"x" * 2000)).status_code

    for _ in range(2):
        assert (await not_acceptable(), await too_large()) == (406, 413)
    with statements_sent(app) as flood:
        for _ in range(50):
            assert (await not_acceptable(), await too_large()) == (429, 429)
    assert flood == []
    with Session(sync_engine) as session:
        assert session.scalar(select(func.count()).select_from(AccessRecord)) == before + 4
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 429  # unknown here: screened


async def test_a_known_key_refused_before_its_body_counts_as_a_failure_too(make_api, world, sync_engine):
    """A known key skips the screen; its 406s never authenticate it, so each wrote a ledger row, unscreened.
    Now a refusal before authentication forgets the key until it authenticates again."""
    api = make_api(failed_requests_per_address=3)
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 200  # known to this worker
    with Session(sync_engine) as session:
        before = session.scalar(select(func.count()).select_from(AccessRecord))
    headers = {"Accept": "text/plain", "Authorization": f"Bearer {world.keys['full']}"}
    statuses = [
        (await api.http.post("/graphql", json={"query": "{ viewer { id } }"}, headers=headers)).status_code
        for _ in range(20)
    ]
    assert statuses == [406] * 3 + [429] * 17
    with Session(sync_engine) as session:
        assert session.scalar(select(func.count()).select_from(AccessRecord)) == before + 3


async def test_a_partner_sharing_the_flooded_address_keeps_working(make_api, world):
    api = make_api(failed_requests_per_address=3)
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 200  # known to this worker
    for _ in range(3):
        await api.query(BAD_KEY, "{ viewer { name } }")
    assert (await api.query(BAD_KEY, "{ viewer { name } }")).status == 429
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).data == {"viewer": {"name": "full"}}
    assert (await api.query(None, "{ viewer { name } }")).status == 429  # no key: limited like a bad one


async def test_only_a_trusted_proxy_decides_who_is_flooding(make_api, world):
    api = make_api(failed_requests_per_address=2, trusted_proxies="127.0.0.0/8")

    async def as_client(address: str) -> int:
        response = await api.http.post(
            "/graphql",
            json={"query": "{ viewer { name } }"},
            headers={"Authorization": f"Bearer {BAD_KEY}", "X-Forwarded-For": address},
        )
        return response.status_code

    # httpx's test transport connects from 127.0.0.1: the trusted proxy
    assert [await as_client("203.0.113.1") for _ in range(3)] == [401, 401, 429]
    assert await as_client("203.0.113.2") == 401  # another client behind the same proxy


async def test_a_revoked_key_no_longer_passes_the_screen(make_api, world, sync_engine):
    from api.operators import accounts as operators

    api = make_api(failed_requests_per_address=3)
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 200  # known to this worker
    prefix = world.keys["full"].split("_")[1]
    with Session(sync_engine) as session, session.begin():
        operators.revoke_key(session, prefix)
    for _ in range(3):
        assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 401
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 429


async def test_a_burst_sent_at_once_is_counted_before_it_is_answered(make_api, world):
    """Each request without a known credential counts as it arrives: 40 bad keys sent together reach
    authentication no more than the limit allows (counted on their 401s, they all would)."""
    api = make_api(failed_requests_per_address=5)
    keys = [f"pak_{i:012d}_" + "z" * 43 for i in range(40)]
    responses = await asyncio.gather(*(api.query(key, "{ viewer { name } }") for key in keys))
    statuses = [response.status for response in responses]
    assert statuses.count(401) <= 5 and statuses.count(429) >= 35, statuses


async def test_a_valid_key_is_forgiven_its_first_request(make_api, world):
    """Counted on arrival, a request that authenticates is given back: a partner's new keys do not
    bring its own address closer to the limit."""
    api = make_api(failed_requests_per_address=2)
    for name in ("full", "no-contact", "full", "no-contact"):
        assert (await api.query(world.keys[name], "{ viewer { name } }")).status == 200
    assert (await api.query(BAD_KEY, "{ viewer { name } }")).status == 401  # one failure of the two allowed


def test_one_ipv6_subscriber_is_one_owner_of_turns(make_api, world):
    """The worker's turns (fair_turns) wait by the subscriber the limiter counts: a /64's many addresses
    queue as one owner, not as many."""
    api = make_api()
    app = api.http._transport.app  # type: ignore[attr-defined]
    pipeline = next(route.endpoint.__self__ for route in app.routes if getattr(route, "path", "") == "/graphql")
    owners = {pipeline.owner(None, f"2001:db8:1:2::{i:x}") for i in range(50)}
    assert owners == {("address", "2001:db8:1:2::/64")}
