"""Traces (api/http/tracing.py): a span per request, per SQL statement and per GraphQL operation, read here from
an in-memory exporter. None carries the query's text, its variables, its result or a patient's data, whether
the operation is sent by POST or in a GET's query string; and nothing is traced unless configured."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from api.http.app import create_app
from api.http.tracing import export_to, tracer_provider
from api.settings import Settings
from tests.client import ApiClient
from tests.http.test_logs_without_personal_data import PATIENT
from tests.world import DAY

BOOK = """mutation Book($input: BookAppointmentInput!) { bookAppointment(input: $input) {
  __typename ... on AppointmentBooked { appointment { id patient { firstName lastName phone email } } } } }"""
PERSONAL = ("Zéphyrine", "Quatremare", "98 76 54", "zephyrine.q")
READ = "query Names { viewer { name } }"


@pytest.fixture
async def traced(database_url, world):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    export_to(provider, exporter, batched=False)  # as the app exports, redacted, without waiting for a batch
    app = create_app(Settings(database_url=database_url, secret_key="test-secret"), tracing=provider)
    client = ApiClient(app)
    yield client, exporter
    await client.close()
    await app.state.engine.dispose()


def _booking(world):
    start = DAY + timedelta(days=5)
    return {
        "practiceId": world.practice_id("A"),
        "practitionerId": world.practitioners["A"][0],
        "startsAt": start.isoformat(),
        "endsAt": (start + timedelta(minutes=20)).isoformat(),
        "newPatient": PATIENT,
    }


def _exported(exporter: InMemorySpanExporter) -> str:
    return "\n".join(span.to_json() for span in exporter.get_finished_spans())


async def test_spans_carry_no_query_text_variables_result_or_patient_data(traced, world):
    api, exporter = traced
    booked = await api.query(world.keys["full"], BOOK, {"input": _booking(world)})
    patient = booked.data["bookAppointment"]["appointment"]["patient"]
    assert patient["lastName"] == "Quatremare"  # the result holds the data the spans must not
    # The same operation in a GET's query string, which a tracer would put in `http.url`.
    gotten = await api.http.get(
        "/graphql",
        params={"query": READ, "variables": json.dumps({"who": "Quatremare"})},
        headers={"Authorization": f"Bearer {world.keys['full']}", "Accept": "application/json"},
    )
    assert gotten.status_code == 200

    spans = exporter.get_finished_spans()
    kinds = {span.name for span in spans}
    assert {"graphql.operation", "POST /graphql", "GET /graphql"} <= kinds
    statements = [s for s in spans if "db.statement" in s.attributes or "db.query.text" in s.attributes]
    assert any("INSERT INTO patients" in str(s.attributes.get("db.statement")) for s in statements)
    exported = _exported(exporter)
    assert [secret for secret in PERSONAL if secret in exported] == []
    assert "bookAppointment" not in exported and "viewer" not in exported  # no query text
    assert "variables" not in exported and "query=" not in exported


async def test_the_operation_span_names_the_operation_its_document_hash_cost_and_outcome(traced, world):
    api, exporter = traced
    assert (await api.query(world.keys["full"], READ)).errors == []
    assert (await api.query("pk_nobody.secret", READ)).status == 401
    served, refused = [s for s in exporter.get_finished_spans() if s.name == "graphql.operation"]
    assert served.attributes["graphql.operation.name"] == "Names"
    assert served.attributes["graphql.document.sha256"] == hashlib.sha256(READ.encode()).hexdigest()
    assert served.attributes["partner_api.outcome"] == "served"
    assert served.attributes["partner_api.cost.actual"] >= 1
    assert refused.attributes["partner_api.outcome"] == "refused"
    assert refused.attributes["partner_api.error_code"] == "UNAUTHENTICATED"
    # The statements of the request are inside its operation span.
    inside = [s for s in exporter.get_finished_spans() if s.parent and s.parent.span_id == served.context.span_id]
    assert any("db.statement" in s.attributes for s in inside)


def test_an_error_s_message_and_stack_trace_never_leave_in_a_span():
    """A database error can quote a value; the exporter gets its type only."""
    exporter, provider = InMemorySpanExporter(), TracerProvider()
    export_to(provider, exporter, batched=False)
    with provider.get_tracer(__name__).start_as_current_span("SELECT", record_exception=False) as span:
        span.record_exception(ValueError('invalid input syntax for type integer: "Quatremare"'))
        span.set_status(Status(StatusCode.ERROR, 'invalid input syntax for type integer: "Quatremare"'))
    (exported,) = exporter.get_finished_spans()
    assert exported.status.status_code is StatusCode.ERROR and exported.events[0].attributes == {
        "exception.type": "ValueError"
    }
    assert "Quatremare" not in exported.to_json()


def test_tracing_is_off_unless_an_endpoint_is_configured(database_url):
    assert tracer_provider("") is None
    app = create_app(Settings(database_url=database_url, secret_key="x"))
    assert "OpenTelemetryMiddleware" not in {m.cls.__name__ for m in app.user_middleware}
    configured = create_app(
        Settings(database_url=database_url, secret_key="x", tracing_otlp_endpoint="http://127.0.0.1:9/v1/traces")
    )
    assert "OpenTelemetryMiddleware" in {m.cls.__name__ for m in configured.user_middleware}
