"""Property: a valid client assertion, DPoP proof or access token changed in any one byte (replaced,
removed or inserted) never gets a token or an answer. The valid original is never sent, so nothing
but the change can make it refused; each example uses a fresh one."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oauth_client import GRAPHQL_URL, TOKEN_URL, DPoPKey, SigningKey, claims, register, token_form

VIEWER = {"query": "{ viewer { name } }"}
PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, float, str]:
    """(kind, where as a fraction of the length, the character put there)."""
    return draw(st.sampled_from(["replace", "remove", "insert"])), draw(st.floats(0, 1)), draw(PRINTABLE)


def mutate(value: str, mutation: tuple[str, float, str]) -> str | None:
    """`value` changed in one byte; None when the change leaves it as it was."""
    kind, where, char = mutation
    at = min(int(where * len(value)), len(value) - 1)
    changed = {
        "replace": value[:at] + char + value[at + 1 :],
        "remove": value[:at] + value[at + 1 :],
        "insert": value[:at] + char + value[at:],
    }[kind]
    return None if changed == value else changed


@pytest.fixture
def api(make_api):
    """The address screen lifted: every mutation comes from one address, and it is the signatures that are
    tried here (tests/protection/test_address_limiter.py tries the screen)."""
    return make_api(failed_requests_per_address=10**6)


@pytest.fixture
def client(sync_engine, world) -> tuple[SigningKey, str]:
    key = SigningKey("mutation-key")
    return key, register(sync_engine, "full", key)


async def _token(api, key: SigningKey, client_id: str, dpop: DPoPKey | None = None) -> str:
    headers = {"DPoP": dpop.proof("POST", TOKEN_URL)} if dpop else {}
    response = await api.http.post("/oauth/token", data=token_form(key.sign(claims(client_id))), headers=headers)
    assert response.status_code == 200
    return response.json()["access_token"]


@SETTINGS
@given(mutation=mutations())
async def test_a_mutated_assertion_never_gets_a_token(api, client, mutation):
    key, client_id = client
    mutated = mutate(key.sign(claims(client_id)), mutation)
    if mutated is not None:
        response = await api.http.post("/oauth/token", data=token_form(mutated))
        assert response.status_code in (400, 401)
        assert "access_token" not in response.json()


@SETTINGS
@given(mutation=mutations())
async def test_a_mutated_dpop_proof_never_gets_an_answer(api, client, mutation):
    key, client_id = client
    dpop = DPoPKey()
    token = await _token(api, key, client_id, dpop)
    mutated = mutate(dpop.proof("POST", GRAPHQL_URL, token), mutation)
    if mutated is not None:
        response = await api.http.post(
            "/graphql", json=VIEWER, headers={"Authorization": f"DPoP {token}", "DPoP": mutated}
        )
        assert response.status_code == 401 and not response.json().get("data")


@SETTINGS
@given(mutation=mutations())
async def test_a_mutated_access_token_never_gets_an_answer(api, client, mutation):
    key, client_id = client
    mutated = mutate(await _token(api, key, client_id), mutation)
    if mutated is not None:
        response = await api.http.post("/graphql", json=VIEWER, headers={"Authorization": f"Bearer {mutated}"})
        assert response.status_code in (400, 401) and not response.json().get("data")


@SETTINGS
@given(mutation=mutations())
async def test_a_mutated_dpop_bound_token_never_gets_an_answer(api, client, mutation):
    key, client_id = client
    dpop = DPoPKey()
    token = await _token(api, key, client_id, dpop)
    mutated = mutate(token, mutation)
    if mutated is not None:  # the proof is valid for the token as sent, so only the token's change can refuse it
        headers = {"Authorization": f"DPoP {mutated}", "DPoP": dpop.proof("POST", GRAPHQL_URL, mutated)}
        response = await api.http.post("/graphql", json=VIEWER, headers=headers)
        assert response.status_code in (400, 401) and not response.json().get("data")
