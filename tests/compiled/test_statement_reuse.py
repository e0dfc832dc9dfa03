"""A compiled page's statement is built once per partner and shape of request (which filters, which
paging, which selection) and reused: each request's values are its parameters. Requests that share a
statement but not their values (practice, window, cursor) must each get their own page, as the
resolvers give it."""

from __future__ import annotations

import gc
import weakref
from datetime import timedelta

from sqlalchemy.orm import Session

from api.compiled import page_run
from api.data.models import Appointment
from api.operators import accounts as operators
from api.services import reads
from authz.engine import Authorizer
from tests.world import ALL_SCOPES, DAY, WINDOW

TEXT = """query Page($p: ID!, $from: DateTime!, $to: DateTime!, $after: String) {
  appointments(practiceId: $p, from: $from, to: $to, first: 2, after: $after) {
    edges { cursor node { id startsAt reason patient { id firstName phone } practitioner { id lastName } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def test_one_statement_serves_requests_that_differ_in_their_values(make_api, world, sync_engine, plan_runs):
    with Session(sync_engine) as session:  # a second practice, so that one statement reads either
        operators.grant_practice(session, "full", "C", ALL_SCOPES)
        session.commit()
    compiled, resolved = make_api(compiled_plans=True), make_api(compiled_plans=False)
    start, end = WINDOW[0].isoformat(), WINDOW[1].isoformat()
    later = (DAY + timedelta(minutes=30)).isoformat()  # past each practice's first appointment

    async def both(variables: dict[str, object]) -> dict[str, object]:
        answers = [await api.query(world.keys["full"], TEXT, variables) for api in (compiled, resolved)]
        assert answers[0].status == answers[1].status == 200
        assert (answers[0].data, answers[0].errors) == (answers[1].data, answers[1].errors)
        assert answers[0].errors == [] and answers[0].data["appointments"]["edges"], answers[0].body
        return answers[0].data["appointments"]

    built = page_run._statements.cache_info()
    pages = {}
    for practice in ("A", "C"):
        for since in (start, later):
            pages[practice, since] = await both({"p": world.practice_id(practice), "from": since, "to": end})
    at_a = {"p": world.practice_id("A"), "from": start, "to": end}
    second = await both({**at_a, "after": pages["A", start]["pageInfo"]["endCursor"]})
    await both({**at_a, "after": second["pageInfo"]["endCursor"]})

    ids = {key: [edge["node"]["id"] for edge in page["edges"]] for key, page in pages.items()}
    assert len({tuple(page) for page in ids.values()}) == len(ids), "two requests got the same page"
    assert not set(ids["A", start]) & {edge["node"]["id"] for edge in second["edges"]}
    assert plan_runs["page"] == 6  # every request read its page in one statement
    reused = page_run._statements.cache_info()
    # Two shapes (without and with a cursor), each built at most once, then reused.
    assert reused.misses - built.misses <= 2 and reused.hits - built.hits >= 4


def test_the_kept_statements_hold_no_policy_release_alive():
    """A reloaded policy is a new Authorizer: the statements built under the old one must not keep it
    (its Oso instance and its caches) in memory."""
    release = Authorizer()
    gone = weakref.ref(release)
    shape = reads.AppointmentsShape(practitioner=False, statuses=False, updated_since=False, from_cursor=False,
                                    backward=False)
    columns = page_run._columns(Appointment, "", None)
    built = page_run._statements(weakref.ref(release), 1, shape, columns, None, None, None, None)
    assert built == page_run._statements(weakref.ref(release), 1, shape, columns, None, None, None, None)
    del release
    gc.collect()
    assert gone() is None
