"""The partner's client: every intent retried until it is accepted.

Over HTTP, through the lossy proxy, ``POST /v1/transfers`` is repeated with the
same ``Idempotency-Key`` after every error (transport error, 5xx, 409 in flight,
429) with the kit's :class:`Backoff`; a refusal (another 4xx) is final and counted.
Every fifth intent goes over Kafka instead (a ``transfer.intent`` event published
as the initiator principal, re-sent unchanged, same event id, until the broker
acknowledges it), and every 25th both ways with one key: the same intent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace

import httpx
from aiokafka.errors import KafkaError

from clearway.shared.auth.client_credentials import ServiceTokenSource
from clearway.shared.backoff import Backoff, parse_retry_after
from clearway.shared.events import new_event
from clearway.shared.relay import idempotent_producer, stop_producer
from clearway.shared.schemas import default_registry

from .system import TENANT, System

INTENTS_TOPIC = "clearway.transfer.intents.v1"
#: the client's retries: quick at first, at most ~2 s apart (a server's Retry-After
#: is honoured up to that)
RETRY = Backoff(base=0.05, cap=2.0, jitter=0.5)
SCOPE = "payments:initiate payments:read"


def channel(i: int) -> str:
    """Which way intent ``i`` is sent: ``http``, ``kafka`` or ``both``."""
    if i % 25 == 1:
        return "both"
    return "kafka" if i % 5 == 0 else "http"


def body(i: int) -> dict:
    return {
        "amount": 100 + i % 997,
        "currency": "EUR",
        "source": "acct_alphaTreasury",
        "destination": "acct_landlord",
        "description": f"chaos {i}",
    }


@dataclass
class Outcome:
    """What the client saw, per key."""

    accepted: dict[str, str] = field(default_factory=dict)  # key -> transfer id (HTTP)
    conflicting: dict[str, set[str]] = field(default_factory=dict)  # key -> ids seen
    refused: dict[str, str] = field(default_factory=dict)  # key -> status and problem
    unresolved: set[str] = field(default_factory=set)  # gave up at the deadline
    published: set[str] = field(default_factory=set)  # keys sent as Kafka intents
    attempts: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Client:
    def __init__(self, system: System, proxy_port: int, run_id: str, deadline: float) -> None:
        self.system = system
        self.run_id = run_id
        self.deadline = deadline
        self.out = Outcome()
        cid, secret = system.client("partner")
        self.client_id = cid
        self.tokens = ServiceTokenSource(
            f"{system.url('consent')}/oauth/token", cid, secret, scope=SCOPE
        )
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{proxy_port}",
            auth=self.tokens,
            timeout=httpx.Timeout(10.0, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self.producer = None
        self._producer_lock = asyncio.Lock()

    def key(self, i: int) -> str:
        return f"chaos-{self.run_id}-{i:06d}"

    async def close(self) -> None:
        await self.http.aclose()
        await self.tokens.aclose()
        if self.producer is not None:
            await stop_producer(self.producer)

    async def send(self, i: int) -> None:
        way = channel(i)
        sends = []
        if way in ("http", "both"):
            sends.append(self.post(i))
        if way in ("kafka", "both"):
            sends.append(self.publish(i))
        await asyncio.gather(*sends)

    # ------------------------------------------------------------------ HTTP

    async def post(self, i: int) -> None:
        key = self.key(i)
        attempt = 0
        while time.monotonic() < self.deadline:
            attempt += 1
            self.out.attempts += 1
            retry_after = None
            try:
                r = await self.http.post(
                    "/v1/transfers", json=body(i), headers={"Idempotency-Key": key}
                )
            except (httpx.TransportError, ConnectionError) as e:
                self.out.error(type(e).__name__)
            else:
                if r.status_code in (200, 201):
                    self._accepted(key, r.json()["id"])
                    return
                if r.status_code in (401, 409, 429) or r.status_code >= 500:
                    self.out.error(f"http {r.status_code}")
                    retry_after = parse_retry_after(r.headers.get("retry-after"))
                else:
                    self.out.refused[key] = f"{r.status_code} {r.text[:200]}"
                    return
            await asyncio.sleep(RETRY.delay(attempt, retry_after) or 0.0)
        self.out.unresolved.add(key)

    def _accepted(self, key: str, transfer_id: str) -> None:
        seen = self.out.accepted.setdefault(key, transfer_id)
        if seen != transfer_id:
            self.out.conflicting.setdefault(key, {seen}).add(transfer_id)

    # ----------------------------------------------------------------- Kafka

    async def publish(self, i: int) -> None:
        key = self.key(i)
        attempt = 0
        while time.monotonic() < self.deadline:
            attempt += 1
            try:
                ev = await self._intent(i)
                producer = await self._producer()
                await asyncio.wait_for(
                    producer.send_and_wait(
                        INTENTS_TOPIC, value=ev.body(), key=ev.key, headers=ev.headers()
                    ),
                    15,
                )
                self.out.published.add(key)
                return
            except (TimeoutError, KafkaError, ConnectionError, OSError) as e:
                self.out.error(f"kafka {type(e).__name__}")
                await self._drop_producer()
            await asyncio.sleep(RETRY.delay(attempt) or 0.0)
        self.out.unresolved.add(key)

    async def _intent(self, i: int):
        key = self.key(i)
        ev = new_event(
            type="transfer.intent",
            source="/chaos/client",
            aggregate_id=f"int_{key}",
            aggregate_version=1,
            data={"idempotency_key": key, "client_id": self.client_id, **body(i)},
            dataschema=default_registry().get("transfer.intent", 1).dataschema,
            correlation_id=f"corr_{key}",
            tenant=TENANT,
        )
        # a fresh-enough token (the source renews it): it must still be valid when the
        # transfer service reads the intent, after an outage's backlog
        return replace(ev, authorization=await self.tokens.token())

    async def _producer(self):
        async with self._producer_lock:
            if self.producer is None:
                p = idempotent_producer(self.system.link("clearway-initiator"))
                try:
                    await asyncio.wait_for(p.start(), 15)
                except BaseException:
                    await stop_producer(p)
                    raise
                self.producer = p
            return self.producer

    async def _drop_producer(self) -> None:
        async with self._producer_lock:
            if self.producer is not None:
                p, self.producer = self.producer, None
                await stop_producer(p)
