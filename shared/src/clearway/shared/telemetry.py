"""OpenTelemetry wiring: one tracer provider per process, W3C context in Kafka headers.

The trace of one transfer runs HTTP edge → outbox row (traceparent stored with
the row) → relay publish → Kafka headers → consumer (docs/design.md §11).

Spans carry no secrets (docs/design.md §9): every processor installed here sits
behind :class:`RedactingSpanProcessor`, which hands on a redacted copy of each
finished span (attributes, events, links, status, name) using the log rules of
``clearway.shared.redaction``. Trace and span ids, the correlation id and other
ids are kept, so a trace still follows a flow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Status

from clearway.shared.redaction import redact_attribute, redact_text, redact_url

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
            exporter = BatchSpanProcessor(OTLPSpanExporter(endpoint=url))
            provider.add_span_processor(RedactingSpanProcessor(exporter))
        _configured = provider
    for p in processors:
        provider.add_span_processor(RedactingSpanProcessor(p))
    return provider


class RedactingSpanProcessor(SpanProcessor):
    """Passes a redacted copy of every finished span to ``delegate`` (an exporting
    processor), so nothing secret leaves the process in a trace.

    A finished span is read-only, hence a copy: attributes through
    :func:`~clearway.shared.redaction.redact_attribute` (URL query credentials such as
    a PAR ``request_uri``, ``Authorization`` and other sensitive keys, card numbers,
    secrets and emails masked), the same for events and links, and the span name and
    status description through ``redact_text``.
    """

    def __init__(self, delegate: SpanProcessor) -> None:
        self.delegate = delegate

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        self.delegate.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.delegate.on_end(redacted_span(span))

    def shutdown(self) -> None:
        self.delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.delegate.force_flush(timeout_millis)


def redacted_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` with its attributes, events, links, name and status redacted."""
    status = span.status
    if status.description:
        status = Status(status.status_code, redact_text(status.description))
    return ReadableSpan(
        name=redact_url(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_attributes(span.attributes),
        events=[
            Event(redact_text(e.name), _attributes(e.attributes), e.timestamp) for e in span.events
        ],
        links=[Link(link.context, _attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: redact_attribute(k, v) for k, v in (attributes or {}).items()}


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> tuple[str | None, str | None]:
    """The W3C ``traceparent``/``tracestate`` of the current span, if one is active."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None, None  # what the propagators would find: skip them (hot path)
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent"), carrier.get("tracestate")


def traceparent_of(span: trace.Span) -> str | None:
    """The W3C ``traceparent`` (version 00) naming ``span`` as the parent, without
    making it current or running the propagators: what a client puts on a request
    that ``span`` stands for (hot paths such as webhook attempts)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def context_from_traceparent(
    traceparent: str | None, tracestate: str | None = None
) -> otel_context.Context:
    """An OpenTelemetry context whose parent is the given W3C trace context."""
    if not traceparent and not tracestate:
        return otel_context.Context()  # what the propagators extract from nothing
    carrier = {}
    if traceparent:
        carrier["traceparent"] = traceparent
    if tracestate:
        carrier["tracestate"] = tracestate
    return propagate.extract(carrier)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
