"""Every case of authz/policy_tests/*.yaml, one pytest test each; and the cases cover the policy."""

import pytest

from api.scopes import Scope
from authz.engine import POLICY_FILES, Authorizer
from authz.polar_source import PolicySources
from authz.policy_testing import CaseResult, PolicyCase, case_engine, load_cases, run_case

CASES = load_cases()


@pytest.fixture(scope="module")
def authorizer() -> Authorizer:
    return Authorizer()


@pytest.fixture(scope="module")
def engine():
    engine = case_engine()
    yield engine
    engine.dispose()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.file.stem}: {c.name}" for c in CASES])
def test_policy_case(case: PolicyCase, authorizer, engine):
    result = run_case(case, authorizer, engine)
    assert result.passed, str(result)


def _declared_permissions() -> set[tuple[str, str]]:
    blocks = PolicySources.read(POLICY_FILES).resource_blocks()
    return {(block.name, permission) for block in blocks for permission in block.permissions}


def test_every_resource_and_action_has_an_allow_case_and_a_deny_case():
    cases = [c for c in CASES if c.resource is not None]
    allowed = {(c.resource, c.action) for c in cases if c.expect_allow}
    denied = {(c.resource, c.action) for c in cases if not c.expect_allow}
    assert _declared_permissions() - allowed == set(), "add a case where it is allowed"
    assert _declared_permissions() - denied == set(), "add a case where it is denied"


def test_every_scope_opens_something_in_some_case():
    opened_by = {scope for c in CASES if c.expect_allow and c.grant for scope in c.grant.scopes}
    assert set(Scope) - opened_by == set()


def test_expiry_revocation_and_other_partners_and_practices_are_all_covered():
    denied = [c for c in CASES if not c.expect_allow and c.grant]
    for state in ("expired", "revoked", "other_partner", "other_practice"):
        assert any(c.resource for c in denied if getattr(c.grant, state)), f"a row case with {state}: true"
        assert any(c.field for c in denied if getattr(c.grant, state)), f"a field case with {state}: true"


def test_the_internal_note_is_denied_with_every_scope():
    notes = [c for c in CASES if c.field == "Appointment.internalNote"]
    assert notes and all(not c.expect_allow and c.grant and c.grant.scopes == frozenset(Scope) for c in notes)


def test_a_passing_result_reads_pass_and_a_failing_one_says_what_it_got():
    case = CASES[0]
    assert str(CaseResult(case, case.expect_allow)).startswith("PASS")
    failing = str(CaseResult(case, not case.expect_allow))
    assert failing.startswith("FAIL") and "expected" in failing and case.location in failing
