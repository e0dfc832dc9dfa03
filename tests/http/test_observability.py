"""What operators watch: Prometheus metrics at /metrics and one JSON log line per request, both
free of personal data."""

import io
import json
import logging
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import REGISTRY

from api.http.logs import JsonFormatter
from tests.world import window_args

PAGE = """query Day($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!) {
  appointments(practiceId: $p, from: $from, to: $to, first: $n) {
    edges { node { id startsAt reason patient { id firstName lastName phone email } } } } }"""
# What no metric and no log line may carry: the world's patient data and ids, keys, query texts.
PERSONAL = (
    "Prénom",
    "Nom",
    "+3361234",
    "@example.fr",
    "Motif",
    "Note interne",
    "pat_",
    "apt_",
    "pak_",
    "appointments(",
)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def some_requests(api, world) -> None:
    page = {"p": world.practice_id("A"), **window_args(), "n": 3}
    await api.query(world.keys["full"], PAGE, page)  # served
    await api.query(world.keys["no-contact"], PAGE, page)  # served, with FORBIDDEN fields
    await api.query(world.keys["full"], PAGE, {**page, "n": 500})  # COST_LIMIT_EXCEEDED
    await api.query(None, PAGE, page)  # UNAUTHENTICATED


async def test_metrics_count_requests_cost_and_refusals_per_partner(api, world):
    served = sample("partner_api_requests_total", partner="full", outcome="served", code="")
    cost_refused = sample("partner_api_requests_total", partner="full", outcome="refused", code="COST_LIMIT_EXCEEDED")
    anonymous = sample("partner_api_requests_total", partner="", outcome="refused", code="UNAUTHENTICATED")
    forbidden = sample("partner_api_requests_total", partner="no-contact", outcome="served", code="FORBIDDEN")
    latency = sample("partner_api_request_duration_seconds_count", partner="full")
    actual = sample("partner_api_actual_cost_points_sum", partner="full")
    await some_requests(api, world)
    assert sample("partner_api_requests_total", partner="full", outcome="served", code="") == served + 1
    assert (
        sample("partner_api_requests_total", partner="full", outcome="refused", code="COST_LIMIT_EXCEEDED")
        == cost_refused + 1
    )
    assert sample("partner_api_requests_total", partner="", outcome="refused", code="UNAUTHENTICATED") == anonymous + 1
    assert (
        sample("partner_api_requests_total", partner="no-contact", outcome="served", code="FORBIDDEN") == forbidden + 1
    )
    assert sample("partner_api_request_duration_seconds_count", partner="full") == latency + 2
    assert sample("partner_api_actual_cost_points_sum", partner="full") > actual


async def test_metrics_need_no_key_and_carry_no_personal_data(api, world):
    await some_requests(api, world)
    response = await api.http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'partner_api_requests_total{code="",outcome="served",partner="full"}' in text
    assert 'partner_api_requested_cost_points_bucket{le="1000.0",partner="full"}' in text
    assert [word for word in PERSONAL if word in text] == []
    assert world.keys["full"].split("_")[1] not in text  # not even key prefixes


async def test_extraction_refusals_count_as_alerts(make_api, world):
    api = make_api(extraction_floor=1, extraction_activity_factor=0.0)
    before = sample("partner_api_extraction_alerts_total", partner="full")
    response = await api.query(world.keys["full"], PAGE, {"p": world.practice_id("A"), **window_args(), "n": 6})
    assert response.codes == {"EXTRACTION_LIMIT_EXCEEDED"}
    assert sample("partner_api_extraction_alerts_total", partner="full") == before + 1


def test_metrics_of_several_worker_processes_are_summed(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR (set by `serve --workers N`), /metrics answers for every worker."""
    worker = textwrap.dedent("""
        from datetime import UTC, datetime
        from api.http import metrics
        from api.ledger.access import AccessEntry
        entry = AccessEntry(request_id="r", at=datetime.now(UTC), partner_id=1, key_id=1, key_prefix="p",
                            operation_name=None, query=None, outcome="served", error_code=None, http_status=200,
                            requested_cost=10, actual_cost=5, duration_ms=3.0, client_address=None)
        metrics.observe(entry, "Logimed")
    """)
    scrape = "import asyncio; from api.http import metrics; print(asyncio.run(metrics.endpoint(None)).body.decode())"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": ""}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", worker], env=env, check=True)
    text = subprocess.run([sys.executable, "-c", scrape], env=env, check=True, capture_output=True, text=True).stdout
    assert 'partner_api_requests_total{code="",outcome="served",partner="Logimed"} 2.0' in text
    assert 'partner_api_actual_cost_points_sum{partner="Logimed"} 10.0' in text


@pytest.fixture
def log_lines():
    """Every log line the app writes during a test, as the JSON formatter of `serve` writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def lines() -> list[dict]:
        parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
        return [line for line in parsed if not line["logger"].startswith("httpx")]  # the tests' client, not the app

    yield lines
    root.removeHandler(handler)
    root.setLevel(level)


async def test_one_json_log_line_per_request_without_personal_data(api, world, log_lines):
    page = {"p": world.practice_id("A"), **window_args(), "n": 3}
    served = await api.query(world.keys["full"], PAGE, page)
    await api.query(None, PAGE, page)
    got = await api.http.get(
        "/graphql",
        params={"query": PAGE, "variables": json.dumps(page)},
        headers={"Accept": "application/json", "Authorization": f"Bearer {world.keys['full']}"},
    )
    assert got.status_code == 200 and "Motif" in got.text
    lines = log_lines()
    requests = [line for line in lines if line["logger"] == "api.requests"]
    assert len(requests) == 3
    first = requests[0]
    assert first["request_id"] == served.headers["X-Request-Id"]
    assert {k: first[k] for k in ("partner", "operation", "outcome", "code", "status")} == {
        "partner": "full",
        "operation": "Day",
        "outcome": "served",
        "code": None,
        "status": 200,
    }
    assert first["requested_cost"] > 0 and first["actual_cost"] > 0 and first["duration_ms"] > 0
    assert requests[1]["partner"] is None and requests[1]["code"] == "UNAUTHENTICATED"
    logged = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    assert "Motif" in str(served.body) and [word for word in PERSONAL if word in logged] == []
    assert world.practice_id("A") not in logged  # variables are never logged


async def test_a_failure_is_logged_with_its_request_id_but_not_its_message(api, world, log_lines, monkeypatch):
    async def broken(*_args, **_kwargs):
        raise RuntimeError("INSERT failed for patient Jean Dupont, +33612345678")

    monkeypatch.setattr("api.ledger.access.write", broken)
    response = await api.query(world.keys["full"], PAGE, {"p": world.practice_id("A"), **window_args(), "n": 2})
    assert response.status == 503
    lines = log_lines()
    (failure,) = [line for line in lines if line["level"] == "error"]
    assert failure["request_id"] == response.headers["X-Request-Id"]
    assert failure["exception"]["types"] == ["builtins.RuntimeError"] and failure["exception"]["stack"]
    (request,) = [line for line in lines if line["logger"] == "api.requests"]
    assert (request["outcome"], request["code"], request["status"]) == ("refused", "INTERNAL_SERVER_ERROR", 503)
    assert "Dupont" not in json.dumps(lines) and "+336" not in json.dumps(lines)


def test_an_operation_name_that_graphql_would_not_accept_is_not_logged():
    from datetime import UTC, datetime

    from api.http.logs import log_request
    from api.ledger.access import AccessEntry

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("api.requests")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        entry = AccessEntry(
            request_id="r",
            at=datetime.now(UTC),
            partner_id=None,
            key_id=None,
            key_prefix=None,
            operation_name="jean.dupont@example.fr",
            query=None,
            outcome="refused",
            error_code="UNAUTHENTICATED",
            http_status=401,
            requested_cost=None,
            actual_cost=None,
            duration_ms=1.0,
            client_address=None,
        )
        log_request(entry, None)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    assert json.loads(stream.getvalue())["operation"] is None
