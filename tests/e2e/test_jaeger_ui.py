"""The trace of one transfer, found in the Jaeger web UI by a headless Chromium.

Every service runs as its own process (as ``make run`` starts them, with
``tests/e2e/test_platform_flow.py``'s runner) and exports its spans by OTLP to a
Jaeger of this test's own (``deploy/local/tracing.py``: the ``make jaeger`` binary
serving the UI shipped in ``deploy/local/jaeger/ui``). The browser searches the
transfer's trace by its correlation id, as an SRE would, and the trace holds the
spans of transfer, its outbox relay, the rail, webhooks and audit
(docs/design.md §11). A screenshot of the trace lands in
``.local/artifacts/jaeger-ui/``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import pytest_asyncio
from clearway_webhook_verify import Verifier
from playwright.async_api import async_playwright

from clearway.shared.testing.browser import launch_chromium
from clearway.shared.testing.helpers import eventually
from clearway.shared.testing.receiver import VerifyingReceiver

from .test_platform_flow import Platform

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".local" / "artifacts" / "jaeger-ui"
#: The services whose spans one transfer's trace holds, as Jaeger names them
#: (each process's ``service.name``), and the relay's publish spans.
TRACED = ["transfer", "sandbox-rail", "webhooks", "audit"]


def _tracing() -> Any:
    spec = importlib.util.spec_from_file_location(
        "clearway_tracing", ROOT / "deploy" / "local" / "tracing.py"
    )
    assert spec is not None and spec.loader is not None
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)  # registered first: its dataclasses look it up
    return module


@pytest.fixture
def jaeger(tmp_path: Path) -> Iterator[Any]:
    """A Jaeger with its web UI on free ports, for this test only."""
    tracing = _tracing()
    assert tracing.JAEGER_BIN.exists(), "Jaeger is not built: make jaeger"
    ports = tracing.JaegerPorts.free()
    log = open(tmp_path / "jaeger.log", "wb")
    proc = tracing.start(tmp_path, ports, log)
    try:
        assert tracing.wait_ready(ports, proc), (tmp_path / "jaeger.log").read_text()
        yield ports
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)  # an in-memory store: nothing to flush
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest_asyncio.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    """Debian's Chromium (never a downloaded one) with a fresh profile: a browser
    context whose pages are tall enough to render every span row of the trace."""
    async with async_playwright() as pw:
        context = await launch_chromium(
            pw, tmp_path / "chromium-profile", width=1600, height=1200
        )
        try:
            yield context
        finally:
            await context.close()


def _trace_of(data: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first trace in a Jaeger API answer that holds every wanted span."""
    for t in data:
        services = {p["serviceName"] for p in t["processes"].values()}
        operations = {
            (t["processes"][s["processID"]]["serviceName"], s["operationName"]) for s in t["spans"]
        }
        relayed = any(svc == "transfer" and op.endswith(" publish") for svc, op in operations)
        delivered = ("webhooks", "webhook attempt") in operations
        audited = any(svc == "audit" and op.endswith(" process") for svc, op in operations)
        if set(TRACED) <= services and relayed and delivered and audited:
            return t
    return None


async def test_the_trace_of_a_transfer_is_found_in_the_jaeger_ui(
    platform, tmp_path, jaeger, browser
):
    services = Platform(platform, tmp_path)
    services.env |= {
        "CLEARWAY_OTLP_ENDPOINT": jaeger.otlp_endpoint,
        # export spans within a fraction of a second (the SDK's default waits 5 s)
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    receiver = VerifyingReceiver()
    correlation = f"corr_jaeger_{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(timeout=30) as http, receiver.serving() as hook_url:
        try:
            await services.start(http)
            hooks = await services.token(http, "webhooks", "webhooks:endpoints:manage")
            partner = await services.token(http, "partner", "payments:initiate payments:read")
            r = await http.post(
                f"{services.url('webhooks')}/v1/endpoints",
                json={"url": hook_url, "event_types": ["transfer.settled"]},
                headers={"Authorization": f"Bearer {hooks}"},
            )
            assert r.status_code == 201, r.text
            receiver.verifier = Verifier([r.json()["secret"]])
            r = await http.post(
                f"{services.url('transfer')}/v1/transfers",
                json={
                    "amount": 1250,
                    "currency": "EUR",
                    "source": "acct_alphaTreasury",
                    "destination": "acct_landlord",
                    "description": "rent",
                },
                headers={
                    "Authorization": f"Bearer {partner}",
                    "Idempotency-Key": f"idem-{uuid.uuid4().hex}",
                    "X-Correlation-ID": correlation,
                },
            )
            assert r.status_code == 201, r.text

            async def settled():
                return receiver.of_type("transfer.settled")

            await eventually(settled)

            # Jaeger holds the whole trace once every process has exported its spans.
            tags = json.dumps({"clearway.correlation_id": correlation})

            async def whole_trace():
                r = await http.get(
                    f"{jaeger.ui_url}/api/traces",
                    params={"service": "transfer", "tags": tags, "lookback": "1h"},
                )
                return _trace_of(r.json()["data"] or []) if r.status_code == 200 else None

            trace = await eventually(whole_trace, timeout=60, interval=0.5)
            trace_id = trace["traceID"]
        finally:
            services.stop()

    # The SRE's way in: the search page, by service and the correlation id tag.
    page = await browser.new_page()
    query = urlencode({"service": "transfer", "tags": tags, "lookback": "1h", "limit": "20"})
    await page.goto(f"{jaeger.ui_url}/search?{query}")
    result = page.locator(f"a[href*='/trace/{trace_id}']").first
    await result.wait_for(timeout=30_000)
    await result.click()
    await page.wait_for_url(f"**/trace/{trace_id}**", timeout=30_000)
    spans = page.locator(".span-row")
    await spans.first.wait_for(timeout=30_000)
    text = await page.locator("body").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "transfer-trace.png"
    await page.screenshot(path=str(shot), full_page=True)
    for name in [*TRACED, " publish", "webhook attempt", " process", "POST /v1/charges"]:
        assert name in text, f"{name!r} not in the trace page (screenshot: {shot})"
    assert trace_id[:7] in text
