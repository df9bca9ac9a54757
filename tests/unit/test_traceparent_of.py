"""``traceparent_of`` writes what the W3C propagator would inject for the span."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from clearway.shared.telemetry import context_from_traceparent, current_traceparent, traceparent_of

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_traceparent_of_a_span_equals_the_propagators_header() -> None:
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("s", context=context_from_traceparent(PARENT)) as span:
        injected = current_traceparent()[0]
    assert injected is not None and traceparent_of(span) == injected
    assert injected.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


def test_no_traceparent_for_an_invalid_span() -> None:
    assert traceparent_of(trace.INVALID_SPAN) is None
