"""OpenTelemetry traces, off unless `PARTNER_API_TRACING_OTLP_ENDPOINT` names an OTLP/HTTP collector.

Three kinds of span: the HTTP request (OpenTelemetry's ASGI middleware around the Starlette app), each SQL
statement (its SQLAlchemy instrumentation) and each GraphQL operation (`graphql.operation`, made here from the
ledger's line: operation name, document hash, cost, outcome). None carries what could be personal data:
- the query string is hidden from the ASGI middleware (a GET's `query=` and `variables=` would be in `http.url`);
- SQL spans carry the statement with its placeholders, never the bound values (the instrumentation's default),
  and no SQL commenter;
- the operation span has the document's SHA-256, never its text, variables or result;
- before export, every span loses its status description and its exception events' message and stack trace
  (a database error can quote a value: `invalid input syntax for type integer: "Dupont"`), keeping the type.
tests/http/test_tracing.py asserts it on exported spans. This is the only module that imports the `tracing`
extra: a service installed without it runs, untraced, until tracing is configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware

from api.ledger.access import AccessEntry, document_hash, storable_name

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["OperationTracing", "export_to", "tracer_provider", "tracing_middleware"]

SERVICE_NAME = "partner-api"
_HIDDEN_QUERY_STRING = "partner_api.query_string"


def tracer_provider(endpoint: str) -> TracerProvider | None:
    """The exporting provider when an endpoint is configured (None: tracing off, nothing imported)."""
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, override the service name.
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    export_to(provider, OTLPSpanExporter(endpoint=endpoint))
    return provider


def export_to(provider: TracerProvider, exporter: SpanExporter, batched: bool = True) -> None:
    """Spans go to `exporter` redacted (`_Redacting`); `batched=False` (tests) exports each as it ends."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    processor = BatchSpanProcessor(exporter) if batched else SimpleSpanProcessor(exporter)
    provider.add_span_processor(_redacting(processor))


def _redacting(processor: SpanProcessor) -> SpanProcessor:
    """The processor, handed each ended span without the texts an error may carry."""
    from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
    from opentelemetry.trace import Status

    class _Redacting(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            processor.on_start(span, parent_context)

        def on_end(self, span: ReadableSpan) -> None:
            events = [
                Event(e.name, {k: v for k, v in (e.attributes or {}).items() if k == "exception.type"}, e.timestamp)
                for e in span.events
            ]
            redacted = ReadableSpan(
                name=span.name,
                context=span.context,
                parent=span.parent,
                resource=span.resource,
                attributes=span.attributes,
                events=events,
                links=span.links,
                kind=span.kind,
                status=Status(span.status.status_code),
                start_time=span.start_time,
                end_time=span.end_time,
                instrumentation_scope=span.instrumentation_scope,
            )
            processor.on_end(redacted)

        def shutdown(self) -> None:
            processor.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return processor.force_flush(timeout_millis)

    return _Redacting()


def tracing_middleware(engine: AsyncEngine, provider: TracerProvider) -> list[Middleware]:
    """A server span around each request, with the engine's statements traced inside it."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeter

    # This engine's events only: SQLAlchemyInstrumentor().instrument() patches create_engine process-wide, once.
    connections = NoOpMeter(__name__).create_up_down_counter("db.client.connections.usage")
    EngineTracer(  # type: ignore[no-untyped-call]  # the instrumentation is untyped
        provider.get_tracer(__name__), engine.sync_engine, connections, enable_commenter=False
    )
    return [
        Middleware(_HideQueryString),
        Middleware(OpenTelemetryMiddleware, tracer_provider=provider, exclude_spans=["receive", "send"]),
        Middleware(_RestoreQueryString),
    ]


class _HideQueryString:
    """Hands the tracing middleware the request without its query string, kept aside for the app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "query_string": b"", _HIDDEN_QUERY_STRING: scope.get("query_string", b"")}
        await self.app(scope, receive, send)


class _RestoreQueryString:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if _HIDDEN_QUERY_STRING in scope:
            scope = {**scope, "query_string": scope[_HIDDEN_QUERY_STRING]}
            del scope[_HIDDEN_QUERY_STRING]
        await self.app(scope, receive, send)


class OperationTracing:
    """The `graphql.operation` span of each /graphql request (a no-op without a provider).

    Example: `with tracing.operation() as done: ...; done(entry)` — the span covers the request's steps and
    takes its attributes from the ledger's line at the end.
    """

    def __init__(self, provider: TracerProvider | None) -> None:
        self.tracer: Tracer | None = provider.get_tracer(__name__) if provider is not None else None

    @contextmanager
    def operation(self) -> Iterator[Any]:
        if self.tracer is None:
            yield _ignore
            return
        with self.tracer.start_as_current_span("graphql.operation") as span:
            yield lambda entry: span.set_attributes(_attributes(entry))


def _ignore(entry: AccessEntry) -> None:
    return None


def _attributes(entry: AccessEntry) -> dict[str, Any]:
    """What an operator may see of an operation: never its text, variables, result or caller's data."""
    attributes: dict[str, Any] = {
        # As the ledger records them (its document_hash column): a trace and a ledger row are matched by them.
        "graphql.operation.name": storable_name(entry.operation_name) or "",
        "graphql.document.sha256": document_hash(entry) or "",
        "partner_api.outcome": entry.outcome,
        "partner_api.error_code": entry.error_code or "",
        "http.response.status_code": entry.http_status,
        "partner_api.request_id": entry.request_id,
        "partner_api.duration_ms": entry.duration_ms,
    }
    if entry.requested_cost is not None:
        attributes["partner_api.cost.requested"] = entry.requested_cost
    if entry.actual_cost is not None:
        attributes["partner_api.cost.actual"] = entry.actual_cost
    if entry.partner_id is not None:
        attributes["partner_api.partner_id"] = entry.partner_id
    return attributes
