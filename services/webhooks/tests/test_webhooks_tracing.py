"""Each delivery attempt is a span in the trace of the event it delivers (docs/design.md §11)."""

from __future__ import annotations

import dataclasses

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clearway.shared.telemetry import setup_tracing

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


async def test_every_attempt_continues_the_events_trace(
    service, receiver_factory, publish, make_event, eventually
):
    exporter = InMemorySpanExporter()
    setup_tracing("webhooks", processors=[SimpleSpanProcessor(exporter)])
    receiver = await receiver_factory(lambda req, n: (503, {}, b"") if n == 1 else (204, {}, b""))
    await service.create_endpoint(receiver.url)
    event = dataclasses.replace(
        make_event(1, run="trace"), traceparent=f"00-{TRACE_ID}-{PARENT}-01"
    )
    await publish([event])

    def attempts() -> list:
        return [s for s in exporter.get_finished_spans() if s.name == "webhook attempt"]

    await eventually(lambda: len(attempts()) >= 2)
    first, second = attempts()[:2]
    for span in (first, second):
        assert format(span.context.trace_id, "032x") == TRACE_ID
        assert span.kind.name == "CLIENT"
    # parented on the event's own traceparent (stored with the message), not a new root
    assert first.parent is not None and format(first.parent.span_id, "016x") == PARENT
    assert first.attributes["http.response.status_code"] == 503
    assert second.attributes["clearway.webhook.outcome"] == "success"
    # the receiver is handed the attempt span itself as the parent of its own work
    sent = [r.headers["traceparent"] for r in receiver.requests]
    assert sent[:2] == [
        f"00-{TRACE_ID}-{format(s.context.span_id, '016x')}-01" for s in (first, second)
    ]
