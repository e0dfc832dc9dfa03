"""Prometheus metrics, served at `/metrics`: requests, latency, cost and extraction alerts per partner.

Labels are partner names, outcomes and error codes (bounded by `api.errors.ErrorCode`): never a
key, an operation name, an id or anything else a client chooses, so the page discloses no
personal data and its size does not grow with traffic.

prometheus-client counts per process. With `PROMETHEUS_MULTIPROC_DIR` set (`partner-api serve
--workers N` sets it to a fresh directory), every worker writes its values there and `/metrics`
answers the sum over the workers, whichever one serves it.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response

from api.errors import CLIENT_DISCONNECTED, ErrorCode
from api.ledger.access import AccessEntry

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
COST_BUCKETS = (0, 10, 50, 100, 250, 500, 1000, 2500)
CODES = frozenset(code.value for code in ErrorCode) | {CLIENT_DISCONNECTED}  # a client gone is not a server error

REQUESTS = Counter(
    "partner_api_requests", "Requests to /graphql by partner, outcome (served, refused) and first error code.",
    ["partner", "outcome", "code"],
)
LATENCY = Histogram("partner_api_request_duration_seconds", "Time to answer a request to /graphql.", ["partner"])
REQUESTED_COST = Histogram(
    "partner_api_requested_cost_points",
    "Cost of each operation as priced before it runs.",
    ["partner"],
    buckets=COST_BUCKETS,
)
ACTUAL_COST = Histogram(
    "partner_api_actual_cost_points",
    "Cost of each operation as it ran (charged to the budget).",
    ["partner"],
    buckets=COST_BUCKETS,
)
EXTRACTION_ALERTS = Counter(
    "partner_api_extraction_alerts",
    "Requests refused by the distinct-patient limit (their alerts: `partner-api alerts`).",
    ["partner"],
)


def observe(entry: AccessEntry, partner: str | None) -> None:
    """Count one request to /graphql, from its ledger entry; `partner` is None when unauthenticated."""
    name = partner or ""
    code = entry.error_code if entry.error_code in CODES or entry.error_code is None else "OTHER"
    REQUESTS.labels(name, entry.outcome, code or "").inc()
    LATENCY.labels(name).observe(entry.duration_ms / 1000)
    if entry.requested_cost is not None:
        REQUESTED_COST.labels(name).observe(entry.requested_cost)
    if entry.actual_cost is not None:
        ACTUAL_COST.labels(name).observe(entry.actual_cost)
    if code == ErrorCode.EXTRACTION_LIMIT_EXCEEDED:
        EXTRACTION_ALERTS.labels(name).inc()


async def endpoint(_: Request) -> Response:
    """`GET /metrics`, in Prometheus' text format; no key needed."""
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
