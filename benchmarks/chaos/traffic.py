"""The partner's client: every intent retried until it is accepted.

Over HTTP, through the lossy proxy, ``POST /v1/transfers`` is repeated with the
same ``Idempotency-Key`` after every error (transport error, 5xx, 409 in flight,
429) with the kit's :class:`Backoff`; a refusal (another 4xx) is final and counted.
Every fifth intent goes over Kafka instead (a ``transfer.intent`` event published
as the initiator principal, re-sent unchanged, same event id, until the broker
acknowledges it), and every 25th both ways with one key: the same intent. The
client reads the answers on the transfer events topic: an intent refused because
its token expired while it waited in the broker is sent again as a new message
(new event id, same key, fresh token).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field, replace

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from clearway.shared.auth.client_credentials import ServiceTokenSource
from clearway.shared.backoff import Backoff, parse_retry_after
from clearway.shared.events import Event, MalformedEvent, new_event
from clearway.shared.relay import idempotent_producer, stop_producer
from clearway.shared.schemas import default_registry

from .system import TENANT, System, log

INTENTS_TOPIC = "clearway.transfer.intents.v1"
EVENTS_TOPIC = "clearway.transfer.events.v1"
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
    intents: dict[str, str] = field(default_factory=dict)  # intent event id -> key
    #: key -> what its sender waits for now (a run that hangs says where)
    waiting: dict[str, str] = field(default_factory=dict)
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
        token_url = f"{system.url('consent')}/oauth/token"
        self.tokens = ServiceTokenSource(token_url, cid, secret, scope=SCOPE)
        # an intent's token must outlive the broker outage and the backlog after it:
        # renewed once a fifth of its lifetime (five minutes) is gone
        self.intent_tokens = ServiceTokenSource(token_url, cid, secret, scope=SCOPE, refresh_at=0.2)
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{proxy_port}",
            auth=self.tokens,
            timeout=httpx.Timeout(10.0, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self.producer = None
        self._producer_lock = asyncio.Lock()
        self.answers = Answers(system.link("admin"))

    def key(self, i: int) -> str:
        return f"chaos-{self.run_id}-{i:06d}"

    async def close(self) -> None:
        await self.http.aclose()
        await self.tokens.aclose()
        await self.intent_tokens.aclose()
        if self.producer is not None:
            await stop_producer(self.producer)
        await self.answers.stop()

    async def send(self, i: int) -> None:
        way = channel(i)
        sends = []
        if way in ("http", "both"):
            sends.append(self.post(i))
        if way in ("kafka", "both"):
            sends.append(self.publish(i))
        try:
            await asyncio.gather(*sends)
        finally:
            self.out.waiting.pop(self.key(i), None)

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
                self.out.waiting[key] = f"http attempt {attempt}: {type(e).__name__}"
            else:
                self.out.waiting[key] = f"http attempt {attempt}: {r.status_code}"
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
        """Send intent ``i`` until it is answered ``transfer.accepted``. An intent refused
        for its token (expired in the broker's backlog: the transfer service checks it
        when it reads the intent) is sent again as a new message with a fresh token;
        any other refusal is final."""
        key = self.key(i)
        for n in range(1, 100):
            ev = await self._send_intent(i, n)
            if ev is None:
                break
            self.out.intents[ev.id] = key
            self.out.waiting[key] = f"kafka message {n}: answer to {ev.id}"
            answer = await self.answers.wait(ev.id, self.deadline)
            if answer is None:
                break
            if answer.type == "transfer.accepted":
                return
            if answer.data.get("field") != "authorization":
                self.out.refused[key] = f"intent rejected: {answer.data}"
                return
            self.out.error(f"intent rejected: {answer.data.get('reason')}")
        self.out.unresolved.add(key)

    async def _send_intent(self, i: int, n: int) -> Event | None:
        """Publish message ``n`` of intent ``i`` until the broker acknowledges it."""
        attempt = 0
        while time.monotonic() < self.deadline:
            attempt += 1
            self.out.waiting[self.key(i)] = f"kafka message {n}: broker ack, attempt {attempt}"
            try:
                ev = await self._intent(i, n)
                producer = await self._producer()
                await asyncio.wait_for(
                    producer.send_and_wait(
                        INTENTS_TOPIC, value=ev.body(), key=ev.key, headers=ev.headers()
                    ),
                    15,
                )
                return ev
            except (TimeoutError, KafkaError, ConnectionError, OSError) as e:
                self.out.error(f"kafka {type(e).__name__}")
                await self._drop_producer()
            await asyncio.sleep(RETRY.delay(attempt) or 0.0)
        return None

    async def _intent(self, i: int, n: int) -> Event:
        key = self.key(i)
        ev = new_event(
            type="transfer.intent",
            source="/chaos/client",
            aggregate_id=f"int_{key}_{n}",
            aggregate_version=1,
            data={"idempotency_key": key, "client_id": self.client_id, **body(i)},
            dataschema=default_registry().get("transfer.intent", 1).dataschema,
            correlation_id=f"corr_{key}_{n}",
            tenant=TENANT,
        )
        return replace(ev, authorization=await self.intent_tokens.token())

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


class Answers:
    """The transfer service's answers to intents (``transfer.accepted`` and
    ``transfer.rejected`` on its events topic), as the sender reads them."""

    def __init__(self, link) -> None:
        self.link = link
        self._seen: dict[str, Event] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(await self._consumer()))

    async def _consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **self.link.client_options(), group_id=None, enable_auto_commit=False
        )
        try:
            await consumer.start()
            await consumer._client.force_metadata_update()  # as clearway-dlt does, for assign()
            partitions = consumer.partitions_for_topic(EVENTS_TOPIC) or ()
            tps = [TopicPartition(EVENTS_TOPIC, p) for p in partitions]
            if not tps:
                raise KafkaError(f"no partitions known for {EVENTS_TOPIC}")
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _follow(self, consumer: AIOKafkaConsumer | None) -> None:
        """Read the answers until cancelled. A consumer that fails otherwise than by
        the broker being away, or fails for 10 s on end, is replaced by a new one that
        reads from the beginning again (answers are kept by intent id): a reader that
        died quietly would leave every Kafka intent waiting for its deadline."""
        failures = 0
        try:
            while True:
                error: Exception | None = None
                try:
                    if consumer is None:
                        consumer = await self._consumer()
                    batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
                except KafkaError as e:  # the broker is away: aiokafka reconnects
                    failures += 1
                    error = e if failures >= 10 else None
                    batch = {}
                except Exception as e:
                    error = e
                    batch = {}
                else:
                    failures = 0
                if error is not None:
                    log(f"answers reader failed ({type(error).__name__}: {error}), reading again")
                    if consumer is not None:
                        with contextlib.suppress(Exception):
                            await consumer.stop()
                    consumer, failures = None, 0
                if not batch:
                    if failures or error is not None:
                        await asyncio.sleep(1)
                    continue
                self._take(batch)
                async with self._changed:
                    self._changed.notify_all()
        finally:
            if consumer is not None:
                await consumer.stop()

    def _take(self, batch) -> None:
        for records in batch.values():
            for r in records:
                try:
                    ev = Event.from_kafka(r.headers, r.value)
                except MalformedEvent:
                    continue
                if ev.type in ("transfer.accepted", "transfer.rejected"):
                    self._seen.setdefault(ev.data["intent_id"], ev)

    async def wait(self, intent_id: str, deadline: float) -> Event | None:
        """The answer to ``intent_id``, or ``None`` at ``deadline`` (monotonic clock)."""
        async with self._changed:
            while intent_id not in self._seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
            return self._seen[intent_id]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
