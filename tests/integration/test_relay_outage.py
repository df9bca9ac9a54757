"""A broker outage longer than the producer's request timeout: the supervised relay
survives it, ``/readyz`` says not-ready during it and ready after, and every event
written meanwhile reaches the topic.

The broker is a private one started by this test (never the shared one), stopped
and started again on the same port with the same data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from clearway.shared.backoff import Backoff
from clearway.shared.db import create_pool, migrate
from clearway.shared.events import header_map, new_event
from clearway.shared.http import create_app
from clearway.shared.kafka import ensure_topics
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.outbox import Outbox
from clearway.shared.relay import OutboxRelay
from clearway.shared.supervisor import Supervisor, TaskState
from clearway.shared.testing.fixtures import _localstack
from clearway.shared.testing.helpers import eventually, serve

from .kit_helpers import EFFECTS, SCHEMA

pytestmark = pytest.mark.integration

REQUEST_TIMEOUT_MS = 2000  # the producer's; the outage below lasts several times longer
SERVICE = "relay-outage"


class PrivateKafka:
    def __init__(self, base: Path) -> None:
        self.ls = _localstack()
        self.base = base
        self.port, self.controller_port = self.ls.free_port(), self.ls.free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        await asyncio.to_thread(self.ls.start_kafka, self.base, self.port, self.controller_port)

    async def crash(self) -> None:
        await asyncio.to_thread(self.kill)

    def kill(self) -> None:
        """SIGKILL the broker: an outage at once (a graceful stop takes ~15 s here)."""
        pidfile = self.base / "kafka" / "kafka.pid"
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # started by this process: reap it
        pidfile.unlink()


@pytest.fixture
def private_kafka(stack: Any, tmp_path: Path) -> Iterator[PrivateKafka]:
    kafka = PrivateKafka(tmp_path / "stack")
    try:
        yield kafka
    finally:
        kafka.kill()


def relay_app(dsn: str, bootstrap: str) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        relay = OutboxRelay(
            dsn,
            SCHEMA,
            KafkaLink(bootstrap),  # the private broker is open
            poll_interval=0.2,
            producer_options={"request_timeout_ms": REQUEST_TIMEOUT_MS},
            backoff=Backoff(base=0.2, cap=1.0, jitter=0.2),
            stall_after_s=2.0,
        )
        app.state.relay = relay
        async with Supervisor(SERVICE, app) as tasks:
            tasks.task("outbox-relay", relay.run, health=relay.healthy)
            yield

    return create_app(SERVICE, title="relay under a broker outage", lifespan=lifespan)


async def write(pool: asyncpg.Pool, topic: str, start: int, n: int) -> list[str]:
    events = [
        new_event(
            type="kit.demo",
            source="/tests",
            aggregate_id=f"agg_{i % 7}",
            aggregate_version=i,
            data={"amount": i},
        )
        for i in range(start, start + n)
    ]
    async with pool.acquire() as conn, conn.transaction():
        await Outbox().add(conn, topic, *events)
    return [e.id for e in events]


async def ids_on(bootstrap: str, topic: str, expected: int) -> list[str]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(set(seen)) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    seen += [header_map(r.headers)["ce_id"] for r in records]
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return seen


async def test_the_relay_survives_a_broker_outage_and_readiness_follows_it(
    admin_dsn: str, private_kafka: PrivateKafka
):
    await private_kafka.start()
    topic = "kit.outage.events.v1"
    # A topic that does not exist yet (the private broker creates topics on first
    # use): the producer has no metadata for it, so sending to it during the outage
    # fails after the request timeout with a KafkaError (KafkaTimeoutError).
    other = "kit.outage.other.v1"
    await ensure_topics(KafkaLink(private_kafka.bootstrap), [topic])
    await migrate(
        admin_dsn, schema=SCHEMA, service="kitdemo", migrations=[EFFECTS], role_password="dev"
    )
    pool = await create_pool(admin_dsn, schema=SCHEMA, max_size=3)
    app = relay_app(admin_dsn, private_kafka.bootstrap)
    written: list[str] = []
    late: list[str] = []
    try:
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            async def not_ready() -> bool:
                r = await http.get("/readyz")
                return r.status_code == 503 and r.json()["failed_checks"] == ["task:outbox-relay"]

            async def outbox_empty() -> bool:
                return await pool.fetchval("SELECT count(*) FROM outbox") == 0

            written += await write(pool, topic, 0, 50)
            await eventually(outbox_empty, timeout=60)
            await eventually(ready, timeout=30)

            await private_kafka.crash()
            for round_ in range(4):  # events keep coming during the outage
                written += await write(pool, topic, 1000 + 100 * round_, 25)
                late += await write(pool, other, 3000 + 100 * round_, 5)
                await asyncio.sleep(0.5)
            await eventually(not_ready, timeout=30)
            # Stay down for well over the producer's request timeout: its requests
            # expire (a KafkaError), and the relay must outlive that.
            await asyncio.sleep(3 * REQUEST_TIMEOUT_MS / 1000)
            assert await not_ready()
            relay: OutboxRelay = app.state.relay
            assert not relay.healthy()
            assert relay.last_error is not None and "KafkaTimeoutError" in relay.last_error
            assert await pool.fetchval("SELECT count(*) FROM outbox") > 0

            await private_kafka.start()
            await eventually(outbox_empty, timeout=90)
            await eventually(ready, timeout=30)
            written += await write(pool, topic, 5000, 10)  # and it keeps publishing
            await eventually(outbox_empty, timeout=60)
            status = app.state.supervisor.status()["outbox-relay"]
            assert status.state is TaskState.RUNNING
    finally:
        await pool.close()
    seen = await ids_on(private_kafka.bootstrap, topic, len(written))
    assert set(seen) == set(written), f"{len(set(written) - set(seen))} events never arrived"
    seen_late = await ids_on(private_kafka.bootstrap, other, len(late))
    assert set(seen_late) == set(late)
