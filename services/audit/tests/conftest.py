"""Fixtures for the audit service's tests: the real service on a loopback port,
an admin connection to its schema, a producer to publish CloudEvents with."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import uvicorn

from clearway.audit import handlers
from clearway.audit.bootstrap import (
    build_app,
    connect_service_pool,
    connect_signer_pool,
    prepare_database,
)
from clearway.audit.domain import AuditEntry
from clearway.audit.settings import AuditSettings
from clearway.audit.signing import Keyring
from clearway.shared.actor import Actor
from clearway.shared.db import init_connection
from clearway.shared.events import Event, new_event
from clearway.shared.kafka import ensure_topics
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.relay import idempotent_producer
from clearway.shared.testing.helpers import eventually, free_port
from clearway.shared.testing.issuer import TestIssuer

DOMAINS = ("transfer", "webhooks", "consent")


class FakeClock:
    """A clock tests move by hand (retention needs records from past months)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def entry(i: int, **over: Any) -> AuditEntry:
    base = dict(
        source_event_id=f"evt_{i:08d}",
        event_type="transfer.settled",
        action="transfer.settled",
        resource=f"tr_{i % 7}",
        source="/transfer",
        outcome="success",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
        actor=Actor("user_alice", "app_mobile", ()),
        reason=None,
        approver=None,
        consent_id=None,
        correlation_id=f"corr_{i % 5}",
        trace_id=None,
        tenant="tn_1",
    )
    base.update(over)
    return AuditEntry(**base)


@dataclass
class AuditLog:
    """The audit schema prepared in a fresh database, without Kafka or HTTP."""

    settings: AuditSettings
    pool: asyncpg.Pool  # the service's own append-only role
    signer: asyncpg.Pool  # the checkpoint writer's role
    admin: asyncpg.Connection  # the database owner, search_path = audit
    keyring: Keyring
    clock: FakeClock

    async def append(self, n: int, start: int = 0, **over: Any) -> list[int]:
        async with self.pool.acquire() as conn, conn.transaction():
            return await handlers.append_entries(
                conn, [entry(i, **over) for i in range(start, start + n)], clock=self.clock
            )

    async def checkpoint(self):
        return await handlers.take_checkpoint(self.signer, self.keyring, self.clock)


@pytest_asyncio.fixture
async def audit_log(platform) -> AsyncIterator[AuditLog]:
    clock = FakeClock()
    settings = AuditSettings(platform=platform, clock=clock, consume=False)
    await prepare_database(settings)
    pool = await connect_service_pool(settings)
    signer = await connect_signer_pool(settings)
    admin = await asyncpg.connect(platform.database_url, server_settings={"search_path": "audit"})
    await init_connection(admin)
    try:
        yield AuditLog(settings, pool, signer, admin, Keyring.generate(), clock)
    finally:
        await admin.close()
        await signer.close()
        await pool.close()


def audit_topic(s: Any) -> str:
    return s.settings.platform.topic_prefix + "clearway.audit.events.v1"


async def read_events(kafka: KafkaLink, topic: str, n: int, timeout: float = 60) -> list[Event]:
    """The first ``n`` events of ``topic`` (all partitions), in offset order per partition."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, **kafka.client_options(), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    out: list[Event] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                out += [Event.from_kafka(r.headers, r.value) for r in records]
    finally:
        await consumer.stop()
    return sorted(out, key=lambda e: e.time)


@dataclass
class RunningAudit:
    settings: AuditSettings
    base_url: str
    issuer: TestIssuer
    producer: Any
    admin: asyncpg.Connection
    app: Any
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, scopes: tuple[str, ...] = ("audit:read",), tenant: str = "tn_1") -> str:
        return self.issuer.token(
            sub="support_bob",
            client_id="support-console",
            scopes=scopes,
            audience="clearway-audit",
            tenant=tenant,
        )

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.token()}"}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=60)

    async def publish(self, domain: str, *events: Event, topic: str | None = None) -> None:
        t = topic or self.settings.platform.topic_prefix + f"clearway.{domain}.events.v1"
        for e in events:
            await self.producer.send_and_wait(t, e.body(), key=e.key, headers=e.headers())

    async def count(self) -> int:
        return int(await self.admin.fetchval("SELECT count(*) FROM records"))


def event(
    domain: str, name: str, aggregate: str, version: int, data: dict[str, Any], **kw: Any
) -> Event:
    traceparent = kw.pop("traceparent", None)
    e = new_event(
        type=f"{domain}.{name}",
        source=f"/{domain}",
        aggregate_id=aggregate,
        aggregate_version=version,
        data=data,
        **kw,
    )
    return replace(e, traceparent=traceparent)


@pytest_asyncio.fixture
async def audit_service(platform) -> AsyncIterator[RunningAudit]:
    issuer = TestIssuer()
    topics = [platform.topic(f"clearway.{d}.events.v1") for d in (*DOMAINS, "audit")]
    await ensure_topics(platform.kafka, topics)
    settings = AuditSettings(
        platform=platform.replace(oauth_issuer=issuer.issuer),
        jwks=issuer.jwks(),
        port=free_port(),
        keyring=Keyring.generate(),
        checkpoint_interval_s=3600,
    )
    app = build_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{settings.port}"

    async def healthy() -> bool:
        if task.done():
            task.result()
        try:
            async with httpx.AsyncClient() as c:
                return (await c.get(base + "/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(healthy, timeout=60)
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    admin = await asyncpg.connect(platform.database_url, server_settings={"search_path": "audit"})
    await init_connection(admin)
    try:
        yield RunningAudit(settings, base, issuer, producer, admin, app)
    finally:
        await admin.close()
        await producer.stop()
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
