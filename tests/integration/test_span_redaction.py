"""Traces carry no secrets: a request with a card number (refused at the edge) and
one with a PAR ``request_uri`` in its query and a bearer token in ``Authorization``
leave spans without them,
while trace ids, ids and the correlation id stay (docs/design.md §9, §11)."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import Request
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clearway.shared.http import create_app
from clearway.shared.telemetry import setup_tracing
from clearway.shared.testing.helpers import serve
from clearway.shared.testing.issuer import TestIssuer

pytestmark = pytest.mark.integration

PAN = "4111111111111111"
REQUEST_URI = "urn:ietf:params:oauth:request_uri:Kx9secretpar"


async def test_spans_of_a_request_carry_no_card_number_token_or_request_uri():
    exporter = InMemorySpanExporter()
    setup_tracing("redaction-demo", processors=[SimpleSpanProcessor(exporter)])
    token = TestIssuer().token("usr_1", "cli_1", ["payments:read"], "clearway-transfer")
    app = create_app("redaction-demo", title="redaction demo")

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str, request: Request) -> dict:
        # what careless instrumentation might record: the raw header and query
        span = trace.get_current_span()
        span.set_attribute("http.request.header.authorization", [request.headers["authorization"]])
        span.set_attribute("app.query", str(request.url.query))
        span.add_event("looked up", {"owner": "alice@example.com", "thing.id": thing_id})
        return {"id": thing_id}

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        r = await http.get(
            "/v1/things/tr_123",
            params={"card": PAN, "request_uri": REQUEST_URI, "cursor": "c_1"},
            headers={"Authorization": f"Bearer {token}", "X-Correlation-ID": "corr_span1"},
        )
        assert r.status_code == 422  # the edge refuses the card number (docs/design.md §9)
        assert r.json()["errors"][0]["field"] == "query.card"
        r = await http.get(
            "/v1/things/tr_123",
            params={"request_uri": REQUEST_URI, "cursor": "c_1"},
            headers={"Authorization": f"Bearer {token}", "X-Correlation-ID": "corr_span1"},
        )
        assert r.status_code == 200

    spans = [s for s in exporter.get_finished_spans() if "things" in s.name]
    assert spans, [s.name for s in exporter.get_finished_spans()]
    exported = json.dumps([json.loads(s.to_json()) for s in spans])
    for secret in (PAN, REQUEST_URI, "Kx9secretpar", token, token.split(".")[1], "alice@"):
        assert secret not in exported, secret
    server = [s for s in spans if s.kind == trace.SpanKind.SERVER][-1]
    attrs = dict(server.attributes or {})
    assert attrs["http.request.header.authorization"] == "[REDACTED]"
    assert "request_uri=[REDACTED]" in exported and "****1111" in exported
    # ids and correlation context survive
    assert attrs["clearway.correlation_id"] == "corr_span1"
    assert "tr_123" in exported and "c_1" in exported
    assert server.context.trace_id and server.context.span_id
    event = next(e for e in server.events if e.name == "looked up")
    assert event.attributes["thing.id"] == "tr_123"
    assert event.attributes["owner"] == "a***@example.com"
