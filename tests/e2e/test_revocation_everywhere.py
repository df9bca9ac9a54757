"""Issue 12 item 3: every service that verifies tokens honours revocations.

The real consent service (uvicorn, its JWKS over HTTP) and the transfer, webhooks,
audit and sandbox-rail services built by their own bootstraps, in process. A client
whose token every one of them accepts is disabled: each refuses it. A service is
ready only once its revocation feed has applied what was published before it started.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from clearway.consent import clients as consent_clients
from clearway.consent.bootstrap import build_app as consent_app
from clearway.consent.settings import ConsentSettings
from clearway.shared.actor import Actor
from clearway.shared.auth import CONSENT_EVENTS_TOPIC
from clearway.shared.kafka import ensure_topics
from clearway.shared.relay import idempotent_producer
from clearway.shared.testing.helpers import eventually, free_port, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

#: service → (route the probe reads, scope it needs)
PROBES = {
    "transfer": ("/v1/transfers?reference=CW0", "payments:read"),
    "webhooks": ("/v1/endpoints", "webhooks:read"),
    "audit": ("/v1/audit/records", "audit:read"),
    "consent": ("/v1/consents", "consents:read"),
    "rail": ("/v1/charges/ch_none", "rail:charges"),
}


def resource_apps(platform, tmp: Path) -> dict[str, FastAPI]:
    from clearway.audit.bootstrap import build_app as audit_app
    from clearway.audit.settings import AuditSettings
    from clearway.rail.bootstrap import build_app as rail_app
    from clearway.rail.settings import RailSettings
    from clearway.transfer.bootstrap import build_app as transfer_app
    from clearway.transfer.settings import TransferSettings
    from clearway.webhooks.bootstrap import build_app as webhooks_app
    from clearway.webhooks.settings import WebhooksSettings

    return {
        "transfer": transfer_app(
            TransferSettings(platform=platform, run_executor=False, rail_url="http://127.0.0.1:9")
        ),
        "webhooks": webhooks_app(
            WebhooksSettings(platform=platform, run_dispatcher=False, run_consumer=False)
        ),
        "audit": audit_app(
            AuditSettings(
                platform=platform, key_provider="keyring", keyring_dir=tmp, consume=False
            )
        ),
        "rail": rail_app(RailSettings(platform=platform)),
    }


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
            yield http


@pytest_asyncio.fixture
async def everything(platform, tmp_path) -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    platform = platform.replace(oauth_issuer=f"http://127.0.0.1:{port}", local_dir=tmp_path)
    settings = ConsentSettings(
        platform=platform, port=port, seed_demo=True, argon2_time_cost=1, argon2_memory_kib=1024
    )
    consent = consent_app(settings)
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(serve(consent, port))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        services = {"consent": http}
        for name, app in resource_apps(platform, tmp_path).items():
            services[name] = await stack.enter_async_context(running(app))
        yield {"consent": consent, "services": services, "http": http, "local": tmp_path}


async def _ready(http: httpx.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


async def test_a_disabled_client_is_refused_by_every_service(everything):
    consent, services, http = everything["consent"], everything["services"], everything["http"]
    svc = consent.state.consent
    scopes = sorted(scope for _, scope in PROBES.values())
    secret = await consent_clients.register_client(
        svc,
        client_id="tnt_demo_alpha-everywhere",
        tenant="tnt_demo_alpha",
        name="calls every service",
        scopes=scopes,
    )
    auth = ("tnt_demo_alpha-everywhere", secret)
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": " ".join(scopes)},
        auth=auth,
    )
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    for name, client in services.items():
        await eventually(lambda c=client: _ready(c), timeout=60)
        path, _ = PROBES[name]
        assert (await client.get(path, headers=headers)).status_code in (200, 404), name

    await consent_clients.disable_client(
        svc, "tnt_demo_alpha", "tnt_demo_alpha-everywhere", Actor("usr_op"), "test", None
    )

    async def refused_everywhere() -> bool:
        answers = await asyncio.gather(
            *(c.get(PROBES[n][0], headers=headers) for n, c in services.items())
        )
        return all(a.status_code == 401 for a in answers)

    await eventually(refused_everywhere, timeout=30)
    again = await http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)
    assert again.status_code == 401


async def test_a_service_is_ready_only_once_earlier_revocations_are_applied(platform, tmp_path):
    """2,000 revocations published before the webhooks service starts: when its
    /readyz first answers 200, every one of them is in its revocation set."""
    topic = platform.topic(CONSENT_EVENTS_TOPIC)
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    try:
        await ensure_topics(platform.kafka, [topic])
        sends = [
            await producer.send(
                topic,
                json.dumps({"consent_id": f"cns_{i}", "revoked_at": 1_700_000_000}).encode(),
                key=f"cns_{i}".encode(),
                headers=[("ce_type", b"consent.revoked")],
            )
            for i in range(2000)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    app = resource_apps(platform, tmp_path)["webhooks"]
    async with running(app) as http:
        for _ in range(6000):  # bounded: 60 s
            r = await http.get("/readyz")
            if r.status_code == 200:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"never ready: {r.text}")
        assert len(app.state.revocations) == 2000
