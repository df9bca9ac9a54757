"""Fixtures for the webhook service's tests: real receivers, the service, a token issuer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn

from clearway.shared.events import Event, new_event
from clearway.shared.kafka import ensure_topics
from clearway.shared.relay import idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.shared.testing.issuer import TestIssuer
from clearway.webhooks.bootstrap import build_app
from clearway.webhooks.settings import WebhooksSettings

TENANT = "ten_acme"
AUDIENCE = "clearway-webhooks"
ALL_SCOPES = ("webhooks:endpoints:manage", "webhooks:read", "webhooks:replay")
EVENTS_TOPIC = "clearway.platform.events.v1"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers by a script."""

    reply: Callable[[Received, int], Reply] = lambda r, n: (204, {}, b"")
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def by_id(self, webhook_id: str) -> list[Received]:
        return [r for r in self.requests if r.headers.get("webhook-id") == webhook_id]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            m = await receive()
            if m["type"] == "http.disconnect":  # the sender died mid-request (kill tests)
                return
            chunks.append(m.get("body", b""))
            if not m.get("more_body"):
                break
        req = Received(
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            b"".join(chunks),
            time.time(),
        )
        self.requests.append(req)
        status, headers, body = self.reply(req, len(self.by_id(req.headers.get("webhook-id", ""))))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest_asyncio.fixture
async def receiver_factory() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(reply: Callable[[Received, int], Reply] | None = None) -> Receiver:
        rec = Receiver() if reply is None else Receiver(reply=reply)
        config = uvicorn.Config(rec, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        rec.port = server.servers[0].sockets[0].getsockname()[1]
        servers.append((server, task))
        return rec

    yield start
    for server, task in servers:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


@pytest.fixture(scope="session")
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
def token(issuer: TestIssuer) -> Callable[..., str]:
    def make(*scopes: str, tenant: str = TENANT) -> str:
        return issuer.token(
            sub="usr_ops",
            client_id="cli_partner_admin",
            scopes=scopes or ALL_SCOPES,
            audience=AUDIENCE,
            tenant=tenant,
        )

    return make


@pytest.fixture
def settings(platform, issuer) -> WebhooksSettings:
    return WebhooksSettings(
        platform=platform.replace(oauth_issuer=issuer.issuer),
        jwks=issuer.jwks(),
        allow_networks=("127.0.0.0/8",),
        schedule=(0, 0.3, 0.3, 0.3, 0.3),
        jitter=0.2,
        request_timeout_s=5,
        lease_s=10,
        poll_interval_s=0.05,
        # the breaker's pauses compressed like the schedule
        breaker_cooldown_s=0.2,
        breaker_max_cooldown_s=0.5,
    )


@dataclass
class Service:
    app: Any
    http: httpx.AsyncClient
    settings: WebhooksSettings
    auth: dict[str, str]

    @property
    def pool(self) -> Any:
        return self.app.state.pool

    async def create_endpoint(self, url: str, **extra: Any) -> dict[str, Any]:
        body = {"url": url, "event_types": ["platform.*"], **extra}
        r = await self.http.post("/v1/endpoints", json=body, headers=self.auth)
        assert r.status_code == 201, r.text
        return r.json()


@pytest_asyncio.fixture
async def service_factory(token, platform) -> AsyncIterator[Callable[..., Awaitable[Service]]]:
    stack = contextlib.AsyncExitStack()

    async def start(settings: WebhooksSettings) -> Service:
        await ensure_topics(settings.platform.kafka, [settings.topic(EVENTS_TOPIC)])
        app = build_app(settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhooks")
        stack.push_async_callback(http.aclose)
        return Service(app, http, settings, {"Authorization": f"Bearer {token()}"})

    yield start
    await stack.aclose()


@pytest_asyncio.fixture
async def service(service_factory, settings) -> Service:
    return await service_factory(settings)


def _event(
    i: int, *, tenant: str = TENANT, run: str = "r", correlation_id: str | None = None
) -> Event:
    schema = default_registry().get("platform.test_event", 1)
    return new_event(
        type="platform.test_event",
        source="/tests",
        aggregate_id=f"thing_{run}_{i}",
        aggregate_version=1,
        data={"id": f"thing_{run}_{i}", "amount": i, "note": None},
        dataschema=schema.dataschema,
        correlation_id=correlation_id or f"corr_{run}_{i}",
        tenant=tenant,
    )


@pytest_asyncio.fixture
async def publish(platform) -> AsyncIterator[Callable[[list[Event]], Awaitable[None]]]:
    """Publish CloudEvents straight to the platform test topic with the kit's producer."""
    producer = idempotent_producer(platform.kafka)
    await producer.start()

    async def send(events: list[Event], topic: str = EVENTS_TOPIC) -> None:
        futures = [
            await producer.send(
                platform.topic(topic), value=e.body(), key=e.key, headers=e.headers()
            )
            for e in events
        ]
        await asyncio.gather(*futures)

    yield send
    await producer.stop()


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    async def wait(probe: Callable[[], Awaitable[bool] | bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout}s")

    return wait


@pytest.fixture
def make_event() -> Callable[..., Event]:
    return _event
