"""Outbox relay: publishes committed outbox rows to Kafka (docs/design.md §4.2).

- wakes on ``LISTEN clearway_outbox_<schema>`` and polls as a fallback;
- claims rows with ``FOR UPDATE SKIP LOCKED`` in id order, deleting them in the
  same statement, and commits that transaction only after Kafka acknowledged
  every record of the batch (``acks=all``, idempotent producer), so a crash
  republishes rather than loses;
- keeps per-key order: one relay per schema is active at a time (a session
  advisory lock elects it; standbys take over when its connection dies), and
  the idempotent producer keeps the order of what it is given per partition;
- survives any error (database or broker down, an aiokafka ``KafkaError`` such as
  a request timeout in a long outage), reports itself unhealthy meanwhile
  (:meth:`OutboxRelay.healthy`, consulted by the supervisor and ``/readyz``) and
  reconnects with backoff.

Run standalone: ``python -m clearway.shared.relay --schema transfer``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from opentelemetry import trace

from clearway.shared.backoff import Backoff
from clearway.shared.db import ident, init_connection
from clearway.shared.events import headers_from_json
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.metrics import OUTBOX_LAG_SECONDS, OUTBOX_PUBLISHED_TOTAL
from clearway.shared.settings import PlatformSettings, kafka_login_from_env
from clearway.shared.telemetry import context_from_traceparent, current_traceparent

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

REQUEST_TIMEOUT_MS = 30000
#: The relay's producer does not linger (ADR 0056): the relay appends a whole claimed
#: batch without yielding to the event loop (unless a producer batch fills up, which
#: is then sent at once anyway), so every record is in the producer's batches when its
#: sender task first looks; a linger would only hold the batch, and the relay's
#: transaction, ~2 ms longer before Kafka acknowledges it.
RELAY_PRODUCER: dict[str, Any] = {"linger_ms": 0}
#: Reconnect delays of the relay: it never gives up (the outbox keeps every row).
RELAY_BACKOFF = Backoff(base=0.5, cap=10.0, jitter=0.2)


def idempotent_producer(link: KafkaLink, **overrides: Any) -> AIOKafkaProducer:
    """The platform's producer over ``link``: idempotent, ``acks=all``, small linger for
    batching."""
    opts: dict[str, Any] = {
        **link.client_options(),
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 2,
        "max_batch_size": 512 * 1024,
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
    }
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


async def stop_producer(producer: AIOKafkaProducer, timeout_s: float = 5.0) -> None:
    """Stop ``producer`` within ``timeout_s`` even while the broker is down.

    aiokafka's ``stop()`` first flushes every pending batch, and with the broker
    gone an idempotent producer retries them forever. After ``timeout_s`` the
    pending batches are abandoned: their outbox rows were never deleted, so the
    next relay publishes them again.
    """
    stopping = asyncio.ensure_future(producer.stop())
    done, _ = await asyncio.wait([stopping], timeout=timeout_s)
    if not done:
        # No public API abandons pending batches; ending the sender task is what
        # unblocks stop() (it waits for the flush or for that task).
        sender_task = getattr(getattr(producer, "_sender", None), "sender_task", None)
        if sender_task is not None:
            sender_task.cancel()
            await asyncio.wait([sender_task], timeout=timeout_s)
        log.warning("Kafka producer stopped with unsent batches (they stay in the outbox)")
        # Bounded as well: a stop that still hangs (closing connections to a broker
        # that vanished) must not hold its caller (a relay, a lock) forever.
        done, _ = await asyncio.wait([stopping], timeout=timeout_s)
        if not done:
            stopping.cancel()
            stopping.add_done_callback(lambda t: t.cancelled() or t.exception())
            log.warning("Kafka producer's stop abandoned after %.0f s more", timeout_s)
            return
    with contextlib.suppress(Exception):
        await stopping


class OutboxRelay:
    """Moves rows of ``<schema>.outbox`` to their Kafka topics."""

    def __init__(
        self,
        database_url: str | Callable[[], str],
        schema: str,
        kafka: KafkaLink,
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        producer: AIOKafkaProducer | None = None,
        producer_options: Mapping[str, Any] | None = None,
        backoff: Backoff = RELAY_BACKOFF,
        stall_after_s: float = 10.0,
        publish_timeout_s: float | None = None,
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.kafka = kafka
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.backoff = backoff
        self.stall_after_s = stall_after_s
        self._producer_options = dict(producer_options or {})
        # With the broker gone an idempotent producer retries a batch forever; past
        # twice its request timeout the relay calls the batch failed instead of
        # holding the transaction open for the whole outage.
        timeout_ms = self._producer_options.get("request_timeout_ms", REQUEST_TIMEOUT_MS)
        self.publish_timeout_s = publish_timeout_s or 2 * timeout_ms / 1000
        self._producer: AIOKafkaProducer | None = producer
        self._own_producer = producer is None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._publishing_since: float | None = None
        self.last_error: str | None = None
        self.published = 0
        self.is_leader = False

    @property
    def channel(self) -> str:
        return f"clearway_outbox_{self.schema}"

    def healthy(self) -> bool:
        """False while the relay cannot publish: its last try failed, or a batch has been
        waiting for Kafka's acknowledgement for longer than ``stall_after_s``."""
        if self.last_error is not None:
            return False
        since = self._publishing_since
        return since is None or time.monotonic() - since < self.stall_after_s

    async def start(self) -> None:
        """Start relaying in a background task (see :meth:`run`)."""
        self._stopping.clear()
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay-{self.schema}")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_forever(self) -> None:
        await self.start()
        assert self._task is not None
        await self._task

    async def run(self) -> None:
        """Relay until :meth:`stop` (or cancellation).

        Survives any error (database gone, broker gone, a request timeout during a
        long broker outage): it is logged, :meth:`healthy` turns false, and the
        relay reconnects after a :data:`RELAY_BACKOFF` delay. Rows stay in the
        outbox meanwhile; nothing is lost, a republished row is absorbed by the
        consumers' inbox.
        """
        try:
            while not self._stopping.is_set():
                try:
                    if self._producer is None:
                        self._producer = idempotent_producer(
                            self.kafka, **{**RELAY_PRODUCER, **self._producer_options}
                        )
                        await self._producer.start()
                    await self._lead()
                except Exception as e:
                    await self._failed(e)
        finally:
            self.is_leader = False
            if self._own_producer:
                await self._drop_producer()

    async def _failed(self, error: Exception) -> None:
        self._failures += 1
        self._publishing_since = None
        first = self.last_error is None
        self.last_error = f"{type(error).__name__}: {error}"[:500]
        delay = self.backoff.delay(self._failures) or self.backoff.cap
        (log.error if first else log.warning)(
            "outbox relay %s cannot publish (%s); retry %d in %.1fs",
            self.schema,
            self.last_error,
            self._failures,
            delay,
        )
        if self._own_producer and not isinstance(
            error, (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
        ):
            # A Kafka error may leave the idempotent producer's sequence numbers out of
            # step with the broker (an expired batch); a fresh producer starts clean.
            await self._drop_producer()
        await self._sleep(delay)

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_producer(producer)

    def _recovered(self) -> None:
        if self.last_error is not None:
            log.info("outbox relay %s publishes again", self.schema)
        self.last_error = None
        self._failures = 0

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _lead(self) -> None:
        # synchronous_commit=off is safe here and only here: losing the DELETE of a
        # published row in a crash means it is published again, which every
        # consumer's inbox absorbs. It takes an fsync off every event's path.
        # a callable DSN is a rotating login (docs/design.md §9): the current one per attempt
        dsn = self.database_url() if callable(self.database_url) else self.database_url
        conn: asyncpg.Connection = await asyncpg.connect(
            dsn,
            server_settings={"search_path": self.schema, "synchronous_commit": "off"},
        )
        await init_connection(conn)
        try:
            while not await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1))", f"relay:{self.schema}"
            ):
                self._recovered()  # a standby is healthy: the leader publishes
                await self._sleep(1.0)  # standby: another relay holds the lock
                if self._stopping.is_set():
                    return
            self.is_leader = True
            await conn.add_listener(self.channel, lambda *_: self._wake.set())
            while not self._stopping.is_set():
                self._wake.clear()
                n = await self.publish_batch(conn)
                if n < self.batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            self.is_leader = False
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        """Publish up to ``batch_size`` rows; returns how many were published."""
        ident(self.schema)
        # The rows are deleted as they are claimed (one round trip instead of a SELECT
        # and a DELETE), but the transaction commits only after Kafka acknowledged
        # every record: a failure or a crash before that rolls the DELETE back.
        async with conn.transaction():
            rows = await conn.fetch(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
                " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
                " RETURNING id, topic, key, headers, payload, created_at",
                self.batch_size,
            )
            if not rows:
                OUTBOX_LAG_SECONDS.labels(self.schema).set(0)
                self._recovered()  # nothing waits to be published
                return 0
            rows.sort(key=lambda r: r["id"])  # RETURNING keeps no order; publish in id order
            lag = time.time() - rows[0]["created_at"].timestamp()
            OUTBOX_LAG_SECONDS.labels(self.schema).set(max(lag, 0.0))
            self._publishing_since = time.monotonic()
            futures = [await self._send(r) for r in rows]
            try:
                await asyncio.wait_for(asyncio.gather(*futures), self.publish_timeout_s)
            except TimeoutError:
                raise KafkaTimeoutError(
                    f"{len(rows)} records not acknowledged within {self.publish_timeout_s:.0f}s"
                ) from None
            self._publishing_since = None
        self.published += len(rows)
        self._recovered()
        OUTBOX_PUBLISHED_TOTAL.labels(self.schema).inc(len(rows))
        return len(rows)

    async def _send(self, row: asyncpg.Record) -> asyncio.Future[Any]:
        headers = headers_from_json(row["headers"])
        stored = dict((k, v.decode()) for k, v in headers)
        parent = context_from_traceparent(stored.get("traceparent"), stored.get("tracestate"))
        with _tracer.start_as_current_span(
            f"{row['topic']} publish",
            context=parent,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": row["topic"],
                "messaging.message.id": stored.get("ce_id", ""),
                "clearway.correlation_id": stored.get("ce_correlationid", ""),
            },
        ):
            tp, ts = current_traceparent()
        if tp:
            headers = [(k, v) for k, v in headers if k not in ("traceparent", "tracestate")]
            headers.append(("traceparent", tp.encode()))
            if ts:
                headers.append(("tracestate", ts.encode()))
        assert self._producer is not None
        fut: asyncio.Future[Any] = await self._producer.send(
            row["topic"], value=bytes(row["payload"]), key=row["key"], headers=headers
        )
        return fut


async def _main(args: argparse.Namespace) -> None:
    settings = PlatformSettings.from_env()
    if args.kafka_bootstrap:
        settings = settings.replace(kafka_bootstrap=args.kafka_bootstrap)
    relay = OutboxRelay(
        args.database_url or settings.database_url,
        args.schema,
        # the schema's service publishes its own outbox, as its own Kafka principal
        settings.kafka_link(kafka_login_from_env(args.schema)),
        batch_size=args.batch_size,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(relay.stop()))
    await relay.run_forever()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Publish a service schema's outbox to Kafka.")
    ap.add_argument("--schema", required=True)
    ap.add_argument("--database-url")
    ap.add_argument("--kafka-bootstrap")
    ap.add_argument("--batch-size", type=int, default=1000)
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main(ap.parse_args(argv)))


if __name__ == "__main__":
    main()
