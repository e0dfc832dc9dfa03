"""Browser safety: no request a browser can send cross-site without a preflight (a form, a
`text/plain` body, a GET) can run a mutation, and CORS is closed unless origins are configured."""

from __future__ import annotations

import pytest

from api.settings import Settings

CANCEL = (
    'mutation { cancelAppointment(appointmentId: "%s") { ... on AppointmentCancelled { appointment { id status } } } }'
)
EVIL, PARTNER_APP = "https://evil.example", "https://app.partner.example"


def simple_requests(query: str) -> list[dict]:
    """What a cross-site page can send without a preflight: forms and text/plain bodies, and GETs."""
    return [
        {"method": "POST", "data": {"query": query}},  # application/x-www-form-urlencoded
        {"method": "POST", "content": f'{{"query": "{query.replace(chr(34), chr(92) + chr(34))}"}}',
         "headers": {"Content-Type": "text/plain"}},
        {"method": "POST", "files": {"query": (None, query)}},  # multipart/form-data
        {"method": "GET", "params": {"query": query}},
    ]


@pytest.mark.parametrize("kind", ["form", "text/plain", "multipart", "GET"])
async def test_a_mutation_runs_only_from_a_json_post(api, world, kind):
    appointment = world.appointments["A"][0]
    request = dict(zip(["form", "text/plain", "multipart", "GET"], simple_requests(CANCEL % appointment), strict=True))[
        kind
    ]
    headers = {"Authorization": f"Bearer {world.keys['full']}", "Origin": EVIL, **request.pop("headers", {})}
    response = await api.http.request(url="/graphql", headers=headers, **request)
    assert response.status_code == (405 if kind == "GET" else 415), response.text  # GraphQL over HTTP's statuses
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "access-control-allow-origin" not in response.headers
    status = await api.query(world.keys["full"], '{ node(id: "%s") { ... on Appointment { status } } }' % appointment)
    assert status.data["node"]["status"] != "CANCELLED"
    done = await api.query(world.keys["full"], CANCEL % appointment)  # the same mutation, as JSON
    assert done.data["cancelAppointment"]["appointment"]["status"] == "CANCELLED"


async def test_cors_is_closed_by_default(api, world):
    preflight = await api.http.options(
        "/graphql",
        headers={
            "Origin": PARTNER_APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 405 and not [h for h in preflight.headers if h.startswith("access-control-")]
    response = await api.http.post(
        "/graphql",
        json={"query": "{ viewer { name } }"},
        headers={"Authorization": f"Bearer {world.keys['full']}", "Origin": PARTNER_APP},
    )
    assert response.status_code == 200 and not [h for h in response.headers if h.startswith("access-control-")]


async def test_cors_allows_the_configured_origins_only(make_api, world):
    api = make_api(cors_origins=[PARTNER_APP])
    asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}
    allowed = await api.http.options("/graphql", headers={"Origin": PARTNER_APP, **asked})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == PARTNER_APP
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers  # a bearer key, never cookies

    refused = await api.http.options("/graphql", headers={"Origin": EVIL, **asked})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers

    response = await api.http.post(
        "/graphql",
        json={"query": "{ viewer { name } }"},
        headers={"Authorization": f"Bearer {world.keys['full']}", "Origin": PARTNER_APP},
    )
    assert response.headers["access-control-allow-origin"] == PARTNER_APP
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_cors_origins_are_read_comma_separated_from_the_environment(monkeypatch):
    monkeypatch.setenv("PARTNER_API_CORS_ORIGINS", f" {PARTNER_APP} ,https://other.example,")
    assert Settings().cors_origins == [PARTNER_APP, "https://other.example"]
    monkeypatch.setenv("PARTNER_API_CORS_ORIGINS", "")
    assert Settings().cors_origins == []
