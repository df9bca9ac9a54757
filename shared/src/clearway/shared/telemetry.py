"""OpenTelemetry wiring: one tracer provider per process, W3C context in Kafka headers.

The trace of one transfer runs HTTP edge → outbox row (traceparent stored with
the row) → relay publish → Kafka headers → consumer (docs/design.md §11).
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured: TracerProvider | None = None


def setup_tracing(
    service: str,
    *,
    otlp_endpoint: str | None = None,
    processors: Iterable[SpanProcessor] = (),
) -> TracerProvider:
    """Install the process's tracer provider (once); export by OTLP/HTTP when configured.

    ``otlp_endpoint`` comes from the settings (``CLEARWAY_OTLP_ENDPOINT``, e.g.
    Jaeger's ``http://127.0.0.1:4318``); ``None``: no export. Extra processors
    (tests use an in-memory exporter) are added to an already installed provider too.
    """
    global _configured
    provider = _configured
    if provider is None:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            provider = current
        else:
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            trace.set_tracer_provider(provider)
        endpoint = otlp_endpoint
        if endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            url = endpoint.rstrip("/") + "/v1/traces"
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
        _configured = provider
    for p in processors:
        provider.add_span_processor(p)
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> tuple[str | None, str | None]:
    """The W3C ``traceparent``/``tracestate`` of the current span, if one is active."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent"), carrier.get("tracestate")


def context_from_traceparent(
    traceparent: str | None, tracestate: str | None = None
) -> otel_context.Context:
    """An OpenTelemetry context whose parent is the given W3C trace context."""
    carrier = {}
    if traceparent:
        carrier["traceparent"] = traceparent
    if tracestate:
        carrier["tracestate"] = tracestate
    return propagate.extract(carrier)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
