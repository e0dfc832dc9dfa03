"""The guarantee that a compiled plan is not a second, weaker authorization: generated documents,
registered as trusted, run on random grants through the compiled plan and through the general
executor, must give the same `data`, `errors` and `extensions`, the same access record (outcome,
codes, requested and actual cost) and the same disclosures in the ledger (records, groups, the row
carrying each patient, patients), and charge the same points.

Documents come from hypothesis-graphql (restricted to the compiled root fields, with the world's
ids and instants around its appointments as literals) and from a strategy of our own (the
appointments page with variables, any subset of its fields under any alias). Each example draws
the grant of partner `diff` at practice A: its scopes, reading horizon, expiry, history permission
and distinct-patient cap (its grant at C stays full, so that every document registers). Both runs
see the same instant and the same state: the partner's budget, distinct-patient windows, alerts and
quarantine are reset before each. 750 examples per run (250 per test), on SQLite and PostgreSQL; and
the page's documents again under each policy hiding patients' records that an operator may release
(50 examples each).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema, nodes
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from api.compiled.plan import Plan, compile_plan
from api.data.models import (
    AccessRecord,
    Disclosure,
    ExtractionAlert,
    Grant,
    KeyMode,
    PartnerBudget,
    PartnerKey,
    PatientDisclosure,
)
from api.documents import service
from api.documents.analysis import DocumentRefused
from api.documents.manifests import document_id_of
from api.operators import accounts as operators
from api.operators.policy_release import release_policy
from api.schema import schema as api_schema
from api.scopes import Scope
from api.timeutil import utcnow
from authz.engine import POLICY_DIR
from tests.client import ACCEPT
from tests.documents.conftest import make_checker
from tests.security.test_extraction_what_counts import HIDING_RULES, SHIPPED_RULE
from tests.world import DAY, WINDOW, World, window_args

SDL = api_schema.as_str()
NOW = utcnow().replace(microsecond=0)  # both executors run at this instant
EXAMPLES = int(os.environ.get("DIFFERENTIAL_EXAMPLES", 250))  # per test: 750 documents a run
HIDING_EXAMPLES = max(1, EXAMPLES // 5)  # per policy hiding patients
UNLIMITED = {"budget_capacity": 10**9, "budget_refill_per_second": 10**9, "max_query_cost": 10**6}
DIFFERENTIAL = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PARTNER = "diff"

APPOINTMENT = ["id", "startsAt", "endsAt", "status", "reason", "source", "createdAt", "updatedAt", "__typename"]
PATIENT = ["id", "firstName", "lastName", "gender", "birthDate", "phone", "email", "__typename"]
PRACTITIONER = ["id", "firstName", "lastName", "specialty", "rpps", "__typename"]
PRACTICE = ["id", "name", "address", "timezone", "__typename"]
PAGE_INFO = ["hasNextPage", "hasPreviousPage", "startCursor", "endCursor"]


def aliased(name: str, twice: bool = False) -> st.SearchStrategy[str]:
    """The field as is, aliased, or (`twice`: a leaf) under two keys, which a compiled projection reads each."""
    plain = name.strip("_")
    return st.sampled_from([name, name, f"a_{plain}: {name}", *([f"{name} b_{plain}: {name}"] if twice else [])])


def selection(scalars: list[str], objects: dict[str, st.SearchStrategy[str]] | None = None) -> st.SearchStrategy[str]:
    """A non-empty selection of some of `scalars` and `objects` (each with its own selection), in any order."""
    objects = objects or {}
    parts = [aliased(s, twice=True) for s in scalars] + [
        st.tuples(aliased(name), inner).map(lambda pair: f"{pair[0]} {{ {pair[1]} }}")
        for name, inner in objects.items()
    ]
    return (
        st.lists(st.integers(0, len(parts) - 1), min_size=1, max_size=len(parts), unique=True)
        .flatmap(lambda chosen: st.tuples(*(parts[i] for i in chosen)))
        .map(lambda picked: " ".join(dict.fromkeys(picked)))
    )


def page_documents() -> st.SearchStrategy[str]:
    """The appointments page with variables, as partner software writes it."""
    practitioner = selection(PRACTITIONER)
    node = selection(
        APPOINTMENT,
        {"patient": selection(PATIENT), "practitioner": practitioner, "practice": selection(PRACTICE)},
    )
    edge = selection(["cursor"], {"node": node})
    connection = selection(["totalCount", "__typename"], {"edges": edge, "pageInfo": selection(PAGE_INFO)})
    header = (
        "query Page($p: ID!, $from: DateTime!, $to: DateTime!, $first: Int, $after: String, "
        "$statuses: [AppointmentStatus!])"
    )
    call = "appointments(practiceId: $p, from: $from, to: $to, first: $first, after: $after, statuses: $statuses)"
    return connection.map(lambda body: f"{header} {{ {call} {{ {body} }} }}")


def page_variables(world: World) -> st.SearchStrategy[dict[str, Any]]:
    windows = st.sampled_from([
        WINDOW,  # mostly the world's week at A: pages with rows, read in one statement
        WINDOW,
        WINDOW,
        (DAY, DAY + timedelta(hours=2)),
        (DAY + timedelta(hours=1), DAY + timedelta(days=1)),
        (DAY + timedelta(days=1), DAY - timedelta(days=1)),  # refused: from after to
    ])
    return st.fixed_dictionaries({
        # mostly A, where the drawn grant applies
        "p": st.sampled_from([world.practice_id(p) for p in "AAAABC"] + ["prc_unknown000000000000"]),
        "window": windows,
        "first": st.sampled_from([1, 2, 3, 5, 8, 50, 0]),
        "after": st.sampled_from([None, None, None, "bm90LWEtY3Vyc29y"]),  # not a cursor of ours: refused
        "statuses": st.none() | st.lists(st.sampled_from(["BOOKED", "CANCELLED", "COMPLETED"]), min_size=1, max_size=2),
    }).map(
        lambda v: {
            "p": v["p"],
            "from": v["window"][0].isoformat(),
            "to": v["window"][1].isoformat(),
            "first": v["first"],
            "after": v["after"],
            "statuses": v["statuses"],
        }
    )


def scalars(world: World) -> dict[str, st.SearchStrategy[Any]]:
    """hypothesis-graphql's literals: the world's ids, small page sizes, instants around its day."""
    ids = [world.practice_id(p) for p in "ABC"] + [i for ids in world.practitioners.values() for i in ids]
    near = [(DAY + timedelta(hours=h)).isoformat() for h in (1, 3)]
    instants = st.sampled_from([w.isoformat() for w in WINDOW] + near)
    return {
        "ID": st.sampled_from(ids).map(nodes.String),
        "Int": st.integers(1, 6).map(nodes.Int),
        "DateTime": instants.map(nodes.String),
    }


def grants() -> st.SearchStrategy[dict[str, Any]]:
    scopes = st.sets(st.sampled_from(sorted(Scope, key=lambda s: s.value)), min_size=1)
    return st.fixed_dictionaries({
        # mostly with appointments:read, without which the page is NOT_FOUND
        "scopes": st.one_of(scopes, scopes.map(lambda drawn: drawn | {Scope.APPOINTMENTS_READ})),
        "days_back": st.sampled_from([0, 1, 30, 365]),
        "days_ahead": st.sampled_from([0, 13, 14, 15, 60]),
        "expired": st.sampled_from([False, False, False, True]),
        "history": st.sampled_from([None, "open", "ended"]),
        "cap": st.sampled_from([None, None, 1, 2]),
    })


@pytest.fixture
def apps(make_api, world, sync_engine):
    """The same API twice, on one database and one clock: plans on, plans off; and `diff`'s trusted key
    and open key (which sends texts)."""
    return _apps(make_api, sync_engine)


@pytest.fixture(params=sorted(HIDING_RULES))
def hiding_apps(request, make_api, world, sync_engine, tmp_path):
    """The same, under a policy an operator released that hides patients' records (the appointment
    stays visible): the compiled page must refuse and null them as the loader does."""
    for source in POLICY_DIR.glob("*.polar"):
        shutil.copy(source, tmp_path / source.name)
    policy = tmp_path / "policy.polar"
    policy.write_text(policy.read_text().replace(SHIPPED_RULE, HIDING_RULES[request.param]))
    assert release_policy(sync_engine, tmp_path).report.ok
    return _apps(make_api, sync_engine, policy_dir=tmp_path)


def _apps(make_api, sync_engine, **settings: Any):
    with Session(sync_engine) as session, session.begin():
        operators.create_partner(session, PARTNER)
        operators.grant_practice(session, PARTNER, "A", set(Scope))
        operators.grant_practice(session, PARTNER, "C", set(Scope))
        key = operators.issue_partner_key(session, PARTNER, label="production").token
        open_key = operators.issue_partner_key(session, PARTNER, label="explorer", mode=KeyMode.OPEN).token
    compiled = make_api(clock=lambda: NOW, compiled_plans=True, **UNLIMITED, **settings)
    general = make_api(clock=lambda: NOW, compiled_plans=False, **UNLIMITED, **settings)
    return compiled, general, key, open_key


def set_grant(sync_engine, drawn: dict[str, Any]) -> None:
    with Session(sync_engine) as session, session.begin():
        partner = operators.find_partner(session, PARTNER)
        grant = session.scalar(
            select(Grant).where(Grant.partner_id == partner.id, Grant.practice_id == _practice(session, "A"))
        )
        assert grant is not None
        grant.set_scopes(drawn["scopes"])
        grant.days_back, grant.days_ahead = drawn["days_back"], drawn["days_ahead"]
        grant.expires_at = NOW + (timedelta(minutes=-1) if drawn["expired"] else timedelta(days=300))
        history = drawn["history"]
        grant.history_until = None if history is None else NOW + timedelta(days=1 if history == "open" else -1)
        grant.max_patients_per_window = drawn["cap"]


def _practice(session: Session, name: str) -> int:
    return operators.find_practice(session, name).id


def register(sync_engine, text: str) -> str:
    document_id = document_id_of(text)
    with Session(sync_engine) as session, session.begin():
        # `diff` may read everything at C, so any document registers; its grant at A is drawn afterwards
        try:
            service.register(session, make_checker(**UNLIMITED), PARTNER, json.dumps({document_id: text}).encode())
        except (service.RegistrationRefused, DocumentRefused):
            return ""
    return document_id


def reset(sync_engine) -> None:
    """What one run leaves that would change the next: the budget, the distinct-patient windows, alerts, quarantine."""
    with Session(sync_engine) as session, session.begin():
        partner_id = operators.find_partner(session, PARTNER).id
        for table in (PartnerBudget, PatientDisclosure, ExtractionAlert):
            session.execute(delete(table).where(table.partner_id == partner_id))
        session.execute(update(PartnerKey).where(PartnerKey.partner_id == partner_id).values(quarantined_at=None))


async def run(api, sync_engine, key: str, document: dict[str, str], variables: dict[str, Any]) -> dict[str, Any]:
    """`document`: {"documentId": ...} for a registered one, {"query": ...} for a text."""
    reset(sync_engine)
    payload = {**document, "variables": variables}
    headers = {"Authorization": f"Bearer {key}", "Accept": ACCEPT}
    response = await api.http.post("/graphql", json=payload, headers=headers)
    request_id = response.headers["x-request-id"]
    with Session(sync_engine) as session:
        record = session.scalar(select(AccessRecord).where(AccessRecord.request_id == request_id))
        assert record is not None
        rows = session.scalars(select(Disclosure).where(Disclosure.access_id == record.id))
        disclosed = sorted(
            ((d.practice_id, d.appointment_id, d.patient_id, d.field_groups, d.patient_field_groups) for d in rows),
            key=repr,
        )
        budget = session.scalar(select(PartnerBudget.points).where(PartnerBudget.partner_id == record.partner_id))
        patients = sorted(
            (p.practice_id, p.patient_id) for p in session.scalars(select(PatientDisclosure).where(
                PatientDisclosure.partner_id == record.partner_id
            ))
        )
        quarantined = session.scalar(select(PartnerKey.quarantined_at).where(PartnerKey.id == record.key_id))
    return {
        "status": response.status_code,
        "body": response.json(),
        "record": (record.outcome, record.error_code, record.http_status, record.requested_cost, record.actual_cost),
        "disclosures": disclosed,
        "budget": budget,  # what was charged, refund included
        "patients": patients,  # the distinct-patient windows
        "quarantined": quarantined is not None,
    }


async def check(
    apps,
    sync_engine,
    plan_runs: Counter[str],
    text: str,
    variables: dict[str, Any],
    grant: dict[str, Any],
    ad_hoc: bool = False,
) -> None:
    """The document registered and run by id with the trusted key, or (`ad_hoc`) sent as text with the open key."""
    compiled, general, key, open_key = apps
    if ad_hoc:
        key, document = open_key, {"query": text}
    else:
        document_id = register(sync_engine, text)
        assume(document_id)
        document = {"documentId": document_id}
    set_grant(sync_engine, grant)
    pages = plan_runs["page"]
    fast = await run(compiled, sync_engine, key, document, variables)
    event("read in one statement" if plan_runs["page"] > pages else "not read in one statement")
    slow = await run(general, sync_engine, key, document, variables)
    event(f"HTTP {slow['status']}, errors: {sorted({e['extensions']['code'] for e in slow['body'].get('errors', [])})}")
    assert fast == slow, (text, variables, grant)


@DIFFERENTIAL
@given(data=st.data())
async def test_the_page_documents_run_alike_on_both_executors(apps, world, sync_engine, plan_runs, data):
    text = data.draw(page_documents(), label="document")
    assert isinstance(compile_plan(api_schema._schema, _parsed(text)), Plan)
    variables = data.draw(page_variables(world), label="variables")
    await check(apps, sync_engine, plan_runs, text, variables, data.draw(grants()))


@settings(DIFFERENTIAL, max_examples=HIDING_EXAMPLES)
@given(data=st.data())
async def test_the_page_documents_run_alike_under_a_policy_hiding_patients(
    hiding_apps, world, sync_engine, plan_runs, data
):
    """Found by an outside review (helper 48): under such a policy the compiled page told NOT_FOUND
    where the loader tells the practice's refusal."""
    # where the hiding matters: the patient and the reason shown side by side, a cap to refuse at
    text = data.draw(page_documents().map(lambda page: page.replace("node {", "node { reason patient { id } ", 1)))
    grant = data.draw(grants(), label="grant")
    grant["scopes"] |= {Scope.APPOINTMENTS_READ, Scope.APPOINTMENTS_REASON}
    grant["cap"] = data.draw(st.sampled_from([1, 2, None]), label="cap")
    await check(hiding_apps, sync_engine, plan_runs, text, data.draw(page_variables(world)), grant)


@DIFFERENTIAL
@given(data=st.data())
async def test_generated_documents_run_alike_on_both_executors(apps, world, sync_engine, plan_runs, data):
    fields = data.draw(st.sampled_from([["appointments"], ["practice"], ["practices"], None]), label="root fields")
    text = data.draw(from_schema(SDL, fields=fields, custom_scalars=scalars(world), allow_x00=False), label="document")
    event("compiled" if isinstance(compile_plan(api_schema._schema, _parsed(text)), Plan) else "general executor")
    await check(apps, sync_engine, plan_runs, text, {}, data.draw(grants()))


@DIFFERENTIAL
@given(data=st.data())
async def test_ad_hoc_documents_run_alike_on_both_executors(apps, world, sync_engine, plan_runs, data):
    """An open key's texts, the page's and generated ones (invalid ones too: both refuse them alike)."""
    if data.draw(st.booleans(), label="the page"):
        text, variables = data.draw(page_documents(), label="document"), data.draw(page_variables(world))
    else:
        fields = data.draw(st.sampled_from([["appointments"], ["practice"], None]), label="root fields")
        text = data.draw(from_schema(SDL, fields=fields, custom_scalars=scalars(world), allow_x00=False))
        variables = {}
    await check(apps, sync_engine, plan_runs, text, variables, data.draw(grants()), ad_hoc=True)


PAGE = """query Page($p: ID!, $from: DateTime!, $to: DateTime!, $first: Int) {
  appointments(practiceId: $p, from: $from, to: $to, first: $first) {
    edges { node { id reason patient { id phone firstName } } } } }"""


@pytest.mark.parametrize(
    ("scopes", "cap", "code"),
    [({Scope.APPOINTMENTS_READ}, None, "FORBIDDEN"), (set(Scope), 1, "EXTRACTION_LIMIT_EXCEEDED")],
    ids=["forbidden-fields", "extraction-refused"],
)
async def test_refusals_inside_a_page_run_alike(apps, world, sync_engine, plan_runs, scopes, cap, code):
    """The two refusals a served page carries: forbidden fields (one error per field and appointment),
    and the distinct-patient budget (one error, the other patients null; the key quarantined)."""
    compiled, general, key, _ = apps
    document = {"documentId": register(sync_engine, PAGE)}
    set_grant(sync_engine, {"scopes": scopes, "days_back": 30, "days_ahead": 30, "expired": False, "history": None,
                            "cap": cap})
    variables = {"p": world.practice_id("A"), **window_args(), "first": 5}
    fast = await run(compiled, sync_engine, key, document, variables)
    slow = await run(general, sync_engine, key, document, variables)
    assert plan_runs["page"] and {e["extensions"]["code"] for e in fast["body"]["errors"]} == {code}
    assert fast == slow


def _parsed(text: str) -> Any:
    from graphql import parse

    return parse(text)


@pytest.fixture(autouse=True)
def plans_ran(request, plan_runs):
    """Each test ran a good share of its examples through a compiled plan (checked at its end)."""
    yield
    examples = HIDING_EXAMPLES if "hiding" in request.node.originalname else EXAMPLES
    if request.node.get_closest_marker("parametrize") is None:  # the generated ones
        assert plan_runs["plan"] >= examples // 5, plan_runs
    if request.node.originalname == "test_the_page_documents_run_alike_on_both_executors":
        assert plan_runs["page"] >= EXAMPLES // 10, plan_runs  # the page read in one statement, not declined
