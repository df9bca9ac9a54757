"""The HTTP conventions every Clearway service gets from ``create_app``."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import date
from decimal import Decimal
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Header, HTTPException, Request
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from pydantic import BaseModel, Field

from clearway.shared.context import current_correlation_id
from clearway.shared.http import (
    PROBLEM_MEDIA_TYPE,
    ApiVersions,
    Deprecation,
    ProblemError,
    accepts_card_numbers,
    create_app,
)
from clearway.shared.logging import configure_logging
from clearway.shared.telemetry import setup_tracing

SERVICE = "http-kit-test"
CARD_NUMBER = "4111111111111111"
DB_PASSWORD = "hunter2"  # the secret no log line may show
DSN_WITH_PASSWORD = f"postgresql://transfer:{DB_PASSWORD}@db:5432/clearway"
PROBLEMS = "https://docs.clearway.dev/problems/"
UPGRADE_GUIDE = "https://docs.clearway.dev/upgrades/2026-11-01"
VERSIONS = ApiVersions(
    current="2026-11-01",
    supported=["2026-06-01"],
    deprecated={"2026-01-15": Deprecation(sunset=date(2027, 1, 15), link=UPGRADE_GUIDE)},
)


class PaymentIn(BaseModel):
    amount: Decimal = Field(gt=0)
    card_number: str
    metadata: dict[str, str] = {}


def build_app() -> FastAPI:
    app = create_app(SERVICE, title="HTTP kit test", api_versions=VERSIONS)
    v1 = APIRouter(prefix="/v1")

    # the one field where a card number is the point
    @v1.post("/payments", status_code=201, openapi_extra=accepts_card_numbers("card_number"))
    async def create_payment(
        payment: PaymentIn, idempotency_key: Annotated[str, Header()]
    ) -> dict[str, str]:
        return {"amount": str(payment.amount)}

    @v1.get("/payments/{payment_id}")
    async def get_payment(payment_id: str, request: Request) -> dict[str, str | None]:
        request.state.client_id = "cli_partner"
        return {
            "id": payment_id,
            "api_version": request.state.api_version,
            "correlation_id": current_correlation_id(),
        }

    @v1.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"login failed for {DSN_WITH_PASSWORD}: password={DB_PASSWORD}")

    @v1.get("/conflict")
    async def conflict() -> None:
        raise ProblemError(
            409, "transfer-conflict", "Transfer exists", "Already submitted.", transfer_id="tr_1"
        )

    @v1.get("/forbidden")
    async def forbidden() -> None:
        raise HTTPException(
            403,
            detail={"type": "insufficient-scope", "title": "Missing scope", "scope": "payments"},
            headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
        )

    @v1.get("/gone")
    async def gone() -> None:
        raise HTTPException(404, detail="No such payment.")

    app.include_router(v1)
    return app


@pytest.fixture
def app() -> FastAPI:
    return build_app()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://clearway.test") as c:
        yield c


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, object] = response.json()
    assert body["type"] == PROBLEMS + slug
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["instance"] == response.request.url.path
    assert body["correlation_id"] == response.headers["x-correlation-id"]
    return body


async def test_a_validation_error_names_the_field_without_echoing_the_card_number(client):
    response = await client.post(
        "/v1/payments",
        json={"amount": "-5", "card_number": CARD_NUMBER, "metadata": {"x": 1}},
        headers={"Idempotency-Key": "k1"},
    )

    body = assert_problem(response, 422, "validation-error")
    fields = [e["field"] for e in body["errors"]]
    assert fields == ["amount", "metadata.x"]
    assert "amount" in body["detail"]
    assert all(set(e) == {"field", "message", "type"} for e in body["errors"])
    assert CARD_NUMBER not in response.text
    assert "-5" not in response.text


async def test_a_missing_header_is_named_as_a_header_field(client):
    response = await client.post("/v1/payments", json={"amount": "5", "card_number": CARD_NUMBER})

    body = assert_problem(response, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["header.idempotency-key"]


async def test_a_malformed_json_body_is_a_400_naming_the_body(client):
    response = await client.post(
        "/v1/payments",
        content=b'{"card_number": "' + CARD_NUMBER.encode() + b'", ',
        headers={"Content-Type": "application/json", "Idempotency-Key": "k1"},
    )

    body = assert_problem(response, 400, "malformed-body")
    assert "body" in body["detail"]
    assert CARD_NUMBER not in response.text


async def test_an_unknown_route_is_a_404_problem(client):
    response = await client.get("/v1/nothing-here")

    body = assert_problem(response, 404, "not-found")
    assert body["instance"] == "/v1/nothing-here"


async def test_a_wrong_method_is_a_405_problem_that_keeps_allow(client):
    response = await client.delete("/v1/boom")

    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET"


@pytest.fixture
def service_log() -> Iterator[io.StringIO]:
    """Logging as a service configures it (``configure_logging``), into a string;
    the root logger and the record factory are put back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_factory = logging.getLogRecordFactory()
    out = io.StringIO()
    configure_logging(SERVICE, stream=out)
    yield out
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    logging.setLogRecordFactory(saved_factory)


async def test_an_unhandled_error_is_a_500_problem_without_a_traceback(client, caplog, service_log):
    with caplog.at_level(logging.ERROR, logger="clearway.shared.http"):
        response = await client.get("/v1/boom", headers={"X-Correlation-ID": "corr_boom"})

    body = assert_problem(response, 500, "internal-error")
    assert body["correlation_id"] == "corr_boom"
    assert DB_PASSWORD not in response.text
    assert "Traceback" not in response.text and "RuntimeError" not in response.text
    # The operator sees what failed and where, in the log, but never the secret
    # (docs/design.md §9): not in the service's JSON lines, nor in a handler we
    # do not own (pytest's caplog stands in for one).
    lines = [json.loads(x) for x in service_log.getvalue().splitlines()]
    [line] = [x for x in lines if x["level"] == "ERROR"]
    assert line["correlation_id"] == "corr_boom"
    assert "GET /v1/boom" in line["message"]
    assert "RuntimeError: login failed for postgresql://transfer:[REDACTED]@db" in line["exc"]
    assert "password=[REDACTED]" in line["exc"]
    assert DB_PASSWORD not in service_log.getvalue()
    assert "RuntimeError: login failed" in caplog.text
    assert DB_PASSWORD not in caplog.text


async def test_a_problem_error_keeps_its_type_and_extensions(client):
    response = await client.get("/v1/conflict")

    body = assert_problem(response, 409, "transfer-conflict")
    assert body["title"] == "Transfer exists"
    assert body["transfer_id"] == "tr_1"


async def test_an_http_exception_with_problem_fields_is_rendered_as_that_problem(client):
    response = await client.get("/v1/forbidden")

    body = assert_problem(response, 403, "insufficient-scope")
    assert body["title"] == "Missing scope"
    assert body["scope"] == "payments"
    assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'


async def test_an_http_exception_with_a_string_detail_keeps_it(client):
    response = await client.get("/v1/gone")

    body = assert_problem(response, 404, "not-found")
    assert body["detail"] == "No such payment."


async def test_the_callers_correlation_id_is_bound_and_echoed(client):
    response = await client.get("/v1/payments/pay_1", headers={"X-Correlation-ID": "corr_abc:1"})

    assert response.headers["x-correlation-id"] == "corr_abc:1"
    assert response.json()["correlation_id"] == "corr_abc:1"


async def test_a_correlation_id_is_generated_when_absent(client):
    response = await client.get("/v1/payments/pay_1")

    generated = response.headers["x-correlation-id"]
    assert generated.startswith("corr_")
    assert response.json()["correlation_id"] == generated


@pytest.mark.parametrize("invalid", ["", "has space", "<script>", "x" * 129])
async def test_an_invalid_correlation_id_is_replaced(client, invalid):
    response = await client.get("/v1/payments/pay_1", headers={"X-Correlation-ID": invalid})

    replaced = response.headers["x-correlation-id"]
    assert replaced != invalid and replaced.startswith("corr_")


async def test_the_correlation_id_is_set_on_the_server_span(client):
    exporter = InMemorySpanExporter()
    setup_tracing("payments-demo", processors=[SimpleSpanProcessor(exporter)])

    await client.get("/v1/payments/pay_1", headers={"X-Correlation-ID": "corr_span"})

    [server] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.attributes["clearway.correlation_id"] == "corr_span"


async def test_the_current_version_is_used_and_echoed_when_none_is_asked(client):
    response = await client.get("/v1/payments/pay_1")

    assert response.json()["api_version"] == "2026-11-01"
    assert response.headers["clearway-version"] == "2026-11-01"
    assert "deprecation" not in response.headers


async def test_a_supported_older_version_is_honoured(client):
    response = await client.get("/v1/payments/pay_1", headers={"Clearway-Version": "2026-06-01"})

    assert response.json()["api_version"] == "2026-06-01"
    assert response.headers["clearway-version"] == "2026-06-01"


@pytest.mark.parametrize("bogus", ["latest", "2026-13-45", "2020-01-01", "20261101"])
async def test_a_bogus_version_is_a_400_naming_the_header(client, bogus):
    response = await client.get("/v1/payments/pay_1", headers={"Clearway-Version": bogus})

    body = assert_problem(response, 400, "unsupported-version")
    assert "Clearway-Version" in body["detail"]
    assert body["supported_versions"] == ["2026-01-15", "2026-06-01", "2026-11-01"]


async def test_a_deprecated_version_is_served_with_deprecation_headers_and_counted(client):
    labels = {
        "service": SERVICE,
        "client": "cli_partner",
        "version": "2026-01-15",
        "feature": "GET /v1/payments/{payment_id}",
    }
    before = sample("clearway_deprecated_calls_total", **labels)

    response = await client.get("/v1/payments/pay_1", headers={"Clearway-Version": "2026-01-15"})

    assert response.status_code == 200
    assert response.headers["clearway-version"] == "2026-01-15"
    # Deprecated since its successor (2026-06-01) shipped; RFC 9745 structured date.
    assert response.headers["deprecation"] == "@1780272000"
    assert response.headers["sunset"] == "Fri, 15 Jan 2027 00:00:00 GMT"
    assert response.headers["link"] == f'<{UPGRADE_GUIDE}>; rel="deprecation"'
    assert sample("clearway_deprecated_calls_total", **labels) == before + 1


async def test_metrics_expose_request_latency_by_route_template(client):
    await client.get("/v1/payments/pay_42")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert (
        "clearway_http_request_duration_seconds_count{"
        f'method="GET",route="/v1/payments/{{payment_id}}",service="{SERVICE}",status="200"}}'
    ) in response.text
    assert "pay_42" not in response.text


async def test_unknown_routes_share_one_metric_series(client):
    labels = {"service": SERVICE, "method": "GET", "route": "unmatched", "status": "404"}
    before = sample("clearway_http_request_duration_seconds_count", **labels)

    await client.get("/v1/scan/1")
    await client.get("/v1/scan/2")

    assert sample("clearway_http_request_duration_seconds_count", **labels) == before + 2


async def test_healthz_is_always_ok_and_ignores_the_version_header(client):
    response = await client.get("/healthz", headers={"Clearway-Version": "bogus"})

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": SERVICE}
    assert response.headers["x-correlation-id"]


async def test_readyz_is_ok_when_every_check_passes(app, client):
    async def database() -> bool:
        return True

    app.state.readiness_checks.append(database)

    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["status"] == "ready"


async def test_readyz_is_a_503_problem_naming_the_failing_checks(app, client):
    async def database() -> bool:
        return True

    async def kafka() -> bool:
        return False

    async def cache() -> bool:
        raise ConnectionError("refused")

    app.state.readiness_checks.extend([database, kafka, cache])

    response = await client.get("/readyz")

    body = assert_problem(response, 503, "not-ready")
    assert body["failed_checks"] == ["kafka", "cache"]
