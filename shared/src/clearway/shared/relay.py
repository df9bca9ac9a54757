"""Outbox relay: publishes committed outbox rows to Kafka (docs/design.md §4.2).

- wakes on ``LISTEN clearway_outbox_<schema>`` and polls as a fallback;
- claims rows with ``FOR UPDATE SKIP LOCKED`` in id order and deletes them only
  after Kafka acknowledged every record of the batch (``acks=all``,
  idempotent producer), so a crash republishes rather than loses;
- keeps per-key order: one relay per schema is active at a time (a session
  advisory lock elects it; standbys take over when its connection dies), and
  the idempotent producer keeps the order of what it is given per partition.

Run standalone: ``python -m clearway.shared.relay --schema transfer``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from opentelemetry import trace

from clearway.shared.db import ident, init_connection
from clearway.shared.events import headers_from_json
from clearway.shared.metrics import OUTBOX_LAG_SECONDS, OUTBOX_PUBLISHED_TOTAL
from clearway.shared.settings import PlatformSettings
from clearway.shared.telemetry import context_from_traceparent, current_traceparent

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


def idempotent_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    """The platform's producer: idempotent, ``acks=all``, small linger for batching."""
    opts: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 2,
        "max_batch_size": 512 * 1024,
        "request_timeout_ms": 30000,
    }
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


class OutboxRelay:
    """Moves rows of ``<schema>.outbox`` to their Kafka topics."""

    def __init__(
        self,
        database_url: str,
        schema: str,
        kafka_bootstrap: str,
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        producer: AIOKafkaProducer | None = None,
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._producer = producer or idempotent_producer(kafka_bootstrap)
        self._own_producer = producer is None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.is_leader = False

    @property
    def channel(self) -> str:
        return f"clearway_outbox_{self.schema}"

    async def start(self) -> None:
        """Start relaying in a background task."""
        if self._own_producer:
            await self._producer.start()
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.schema}")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._own_producer:
            await self._producer.stop()

    async def run_forever(self) -> None:
        await self.start()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._lead()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning("outbox relay lost its database connection: %s; retrying", e)
                self.is_leader = False
                await self._sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _lead(self) -> None:
        # synchronous_commit=off is safe here and only here: losing the DELETE of a
        # published row in a crash means it is published again, which every
        # consumer's inbox absorbs. It takes an fsync off every event's path.
        conn: asyncpg.Connection = await asyncpg.connect(
            self.database_url,
            server_settings={"search_path": self.schema, "synchronous_commit": "off"},
        )
        await init_connection(conn)
        try:
            while not await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1))", f"relay:{self.schema}"
            ):
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
        async with conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, key, headers, payload, created_at FROM outbox"
                " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch_size,
            )
            if not rows:
                OUTBOX_LAG_SECONDS.labels(self.schema).set(0)
                return 0
            lag = time.time() - rows[0]["created_at"].timestamp()
            OUTBOX_LAG_SECONDS.labels(self.schema).set(max(lag, 0.0))
            futures = [await self._send(r) for r in rows]
            await asyncio.gather(*futures)
            await conn.execute(
                "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
        self.published += len(rows)
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
        fut: asyncio.Future[Any] = await self._producer.send(
            row["topic"], value=bytes(row["payload"]), key=row["key"], headers=headers
        )
        return fut


async def _main(args: argparse.Namespace) -> None:
    settings = PlatformSettings.from_env()
    relay = OutboxRelay(
        args.database_url or settings.database_url,
        args.schema,
        args.kafka_bootstrap or settings.kafka_bootstrap,
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
