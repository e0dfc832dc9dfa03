"""Connections follow Relay's cursor connections spec: pages forward and backward, the four
`pageInfo` fields, a priced `totalCount`, and the filters partners page with (statuses, updatedSince)."""

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from api.data.models import Appointment, AppointmentStatus
from api.protection.cost import TOTAL_COUNT_COST
from api.timeutil import utcnow
from tests.world import window_args

PAGE = """query($p: ID!, $from: DateTime!, $to: DateTime!, $first: Int, $after: String, $last: Int,
  $before: String, $statuses: [AppointmentStatus!], $updatedSince: DateTime) {
  appointments(practiceId: $p, from: $from, to: $to, first: $first, after: $after, last: $last, before: $before,
    statuses: $statuses, updatedSince: $updatedSince) {
    edges { cursor node { id status } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  } }"""
COUNT = """query($p: ID!, $from: DateTime!, $to: DateTime!, $statuses: [AppointmentStatus!]) {
  appointments(practiceId: $p, from: $from, to: $to, first: 1, statuses: $statuses) { totalCount } }"""


def variables(world, **extra):
    return {"p": world.practice_id("A"), **window_args(), **extra}


async def page(api, world, **extra):
    response = await api.query(world.keys["full"], PAGE, variables(world, **extra))
    assert response.errors == [], response.body
    return response.data["appointments"]


def ids(connection):
    return [edge["node"]["id"] for edge in connection["edges"]]


async def test_paging_backward_with_last_and_before_gives_the_same_order_as_forward(api, world):
    everything = ids(await page(api, world, first=100))
    assert everything == world.appointments["A"]
    tail = await page(api, world, last=2)
    assert ids(tail) == everything[-2:]
    assert tail["pageInfo"]["hasPreviousPage"] and not tail["pageInfo"]["hasNextPage"]
    seen = ids(tail)
    cursor = tail["pageInfo"]["startCursor"]
    while True:
        earlier = await page(api, world, last=2, before=cursor)
        assert earlier["pageInfo"]["hasNextPage"]  # there is the page we came from
        seen = ids(earlier) + seen
        if not earlier["pageInfo"]["hasPreviousPage"]:
            break
        cursor = earlier["pageInfo"]["startCursor"]
    assert seen == everything


async def test_forward_page_info_carries_start_and_end_cursors(api, world):
    first = await page(api, world, first=2)
    info = first["pageInfo"]
    assert info == {
        "hasNextPage": True,
        "hasPreviousPage": False,
        "startCursor": first["edges"][0]["cursor"],
        "endCursor": first["edges"][-1]["cursor"],
    }
    second = await page(api, world, first=2, after=info["endCursor"])
    assert second["pageInfo"]["hasPreviousPage"]
    back = await page(api, world, last=2, before=second["pageInfo"]["startCursor"])
    assert ids(back) == ids(first)


@pytest.mark.parametrize(
    "arguments",
    [{}, {"first": 2, "last": 2}, {"last": 101}, {"last": 0}, {"first": 2, "before": "x"}, {"last": 2, "after": "x"}],
    ids=["none", "both", "last too large", "last zero", "first with before", "last with after"],
)
async def test_a_page_is_one_bounded_size_in_one_direction(api, world, arguments):
    response = await api.query(world.keys["full"], PAGE, variables(world, **arguments))
    assert response.codes == {"BAD_USER_INPUT"} and response.data is None


async def test_a_cursor_of_one_direction_works_in_the_other_only_for_its_own_query(api, world):
    first = await page(api, world, first=2)
    other = await api.query(
        world.keys["full"], PAGE, variables(world, last=2, before=first["pageInfo"]["endCursor"], statuses=["BOOKED"])
    )
    assert other.codes == {"BAD_USER_INPUT"}


async def test_total_count_counts_the_whole_list_and_is_priced(api, world, sync_engine):
    counted = COUNT.replace("totalCount", "totalCount edges { cursor }")
    response = await api.query(world.keys["full"], counted, variables(world))
    assert response.data["appointments"]["totalCount"] == len(world.appointments["A"])
    # priced beyond the operation's own point: against the same page without the count
    without = await api.query(world.keys["full"], COUNT.replace("totalCount", "edges { cursor }"), variables(world))
    cost, cost_without = response.body["extensions"]["cost"], without.body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == cost_without["requestedQueryCost"] + TOTAL_COUNT_COST
    assert cost["actualQueryCost"] == cost_without["actualQueryCost"] + TOTAL_COUNT_COST
    with Session(sync_engine) as session, session.begin():
        session.execute(
            update(Appointment)
            .where(Appointment.public_id == world.appointments["A"][0])
            .values(status=AppointmentStatus.FULFILLED)
        )
    fulfilled = await api.query(world.keys["full"], COUNT, variables(world, statuses=["FULFILLED"]))
    assert fulfilled.data["appointments"]["totalCount"] == 1


async def test_total_count_of_another_partner_counts_only_what_it_may_see(api, world):
    response = await api.query(world.keys["other"], COUNT, variables(world))
    assert response.codes == {"NOT_FOUND"}


async def test_status_sets_and_updated_since_filter_the_page(api, world, sync_engine):
    a = world.appointments["A"]
    later = utcnow() + timedelta(minutes=5)
    with Session(sync_engine) as session, session.begin():
        session.execute(
            update(Appointment).where(Appointment.public_id == a[0]).values(status=AppointmentStatus.NOSHOW)
        )
        session.execute(
            update(Appointment)
            .where(Appointment.public_id.in_([a[1], a[2]]))
            .values(status=AppointmentStatus.CANCELLED, updated_at=later)
        )
    chosen = await page(api, world, first=100, statuses=["NOSHOW", "CANCELLED"])
    assert ids(chosen) == a[:3]
    recent = await page(api, world, first=100, updatedSince=later.isoformat())
    assert ids(recent) == a[1:3]
    both = await page(api, world, first=100, statuses=["NOSHOW"], updatedSince=later.isoformat())
    assert ids(both) == []


@pytest.mark.parametrize(
    "arguments",
    [{"statuses": []}, {"statuses": ["BOOKED", "BOOKED"]}, {"updatedSince": "2026-12-01T08:00:00"}],
    ids=["empty set", "repeated status", "no offset"],
)
async def test_filters_refuse_what_they_cannot_mean(api, world, arguments):
    response = await api.query(world.keys["full"], PAGE, variables(world, first=10, **arguments))
    assert response.codes == {"BAD_USER_INPUT"}


async def test_deprecated_single_status_still_filters(api, world):
    response = await api.query(
        world.keys["full"],
        "query($p: ID!, $from: DateTime!, $to: DateTime!) { appointments(practiceId: $p, from: $from, to: $to, "
        "first: 100, status: BOOKED) { edges { node { status } } } }",
        variables(world),
    )
    assert response.errors == []
    assert {e["node"]["status"] for e in response.data["appointments"]["edges"]} == {"BOOKED"}


async def test_the_change_feed_page_info_is_complete(api, world):
    feed = """query($p: ID!, $since: String) { appointmentChanges(practiceId: $p, first: 2, since: $since) {
      edges { cursor } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount } }"""
    first = await api.query(world.keys["full"], feed, {"p": world.practice_id("A")})
    connection = first.data["appointmentChanges"]
    assert connection["totalCount"] == len(world.appointments["A"])
    assert connection["pageInfo"]["startCursor"] == connection["edges"][0]["cursor"]
    assert not connection["pageInfo"]["hasPreviousPage"]
    later = await api.query(
        world.keys["full"], feed, {"p": world.practice_id("A"), "since": connection["pageInfo"]["endCursor"]}
    )
    assert later.data["appointmentChanges"]["pageInfo"]["hasPreviousPage"]
    assert later.data["appointmentChanges"]["totalCount"] == len(world.appointments["A"]) - 2
