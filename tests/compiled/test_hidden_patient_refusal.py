"""Under a policy that hides patients' records, a page showing their reason is refused as the general
executor refuses it: their practice's refusal, told once, never NOT_FOUND (which the ledger, metrics and
logs would then count instead of the refusal). Found by an outside review (helper 48)."""

import shutil

import pytest
from sqlalchemy.orm import Session

from api.operators import accounts as operators
from api.operators.policy_release import release_policy
from api.scopes import Scope
from authz.engine import POLICY_DIR
from tests.compiled.test_differential import NOW, PARTNER, UNLIMITED, register, run, set_grant
from tests.security.test_extraction_what_counts import HIDING_RULES, SHIPPED_RULE
from tests.world import window_args

PAGE = """query Page($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 5) { edges { node { id SELECTION } } } }"""


@pytest.mark.parametrize(
    "selection", ["reason patient { id }", "patient { id } reason"], ids=["reason-first", "patient-first"]
)
async def test_a_hidden_patient_is_refused_alike(make_api, world, sync_engine, tmp_path, plan_runs, selection):
    for source in POLICY_DIR.glob("*.polar"):
        shutil.copy(source, tmp_path / source.name)
    policy = tmp_path / "policy.polar"
    policy.write_text(policy.read_text().replace(SHIPPED_RULE, HIDING_RULES["needs identity"]))
    assert release_policy(sync_engine, tmp_path).report.ok
    with Session(sync_engine) as session, session.begin():
        operators.create_partner(session, PARTNER)
        operators.grant_practice(session, PARTNER, "A", set(Scope))
        key = operators.issue_partner_key(session, PARTNER, label="production").token
    compiled = make_api(clock=lambda: NOW, compiled_plans=True, policy_dir=tmp_path, **UNLIMITED)
    general = make_api(clock=lambda: NOW, compiled_plans=False, policy_dir=tmp_path, **UNLIMITED)
    document = {"documentId": register(sync_engine, PAGE.replace("SELECTION", selection))}
    grant = {"scopes": {Scope.APPOINTMENTS_READ, Scope.APPOINTMENTS_REASON}, "days_back": 30, "days_ahead": 30}
    set_grant(sync_engine, {**grant, "expired": False, "history": None, "cap": 1})
    variables = {"p": world.practice_id("A"), **window_args()}
    fast = await run(compiled, sync_engine, key, document, variables)
    slow = await run(general, sync_engine, key, document, variables)
    assert plan_runs["page"] == 1  # the compiled plan ran
    assert fast["body"]["data"] == slow["body"]["data"]
    codes = {
        name: [(error["path"][2:], error["extensions"]["code"]) for error in answer["body"]["errors"]]
        for name, answer in (("compiled", fast), ("general", slow))
    }
    assert codes["compiled"] == codes["general"]
    assert {code for _, code in codes["compiled"]} == {"EXTRACTION_LIMIT_EXCEEDED"}
    assert fast["record"] == slow["record"]
