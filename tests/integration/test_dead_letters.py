"""Poison messages go to the dead-letter topic with the reason; redrive brings them back."""

from __future__ import annotations

import asyncpg
import pytest

from clearway.shared import dlt_cli
from clearway.shared.backoff import Backoff
from clearway.shared.consumer import IdempotentConsumer, PermanentError
from clearway.shared.db import create_pool
from clearway.shared.dlt import DeadLetters, dlt_topic
from clearway.shared.events import Event, new_event
from clearway.shared.kafka import ensure_topics, make_broker, subscribe_idempotent
from clearway.shared.relay import idempotent_producer
from clearway.shared.testing.helpers import eventually, kafka_env

from .kit_helpers import SCHEMA, migrate_effects

pytestmark = pytest.mark.integration


class Ledger:
    """A handler that refuses negative amounts until it is 'fixed'."""

    def __init__(self) -> None:
        self.fixed = False
        self.calls = 0

    async def __call__(self, conn: asyncpg.Connection, ev: Event) -> None:
        self.calls += 1
        if ev.data["amount"] < 0 and not self.fixed:
            raise PermanentError("amount must not be negative")
        if ev.data["amount"] == 13 and not self.fixed:
            raise RuntimeError("flaky handler bug")
        await conn.execute(
            "INSERT INTO effects (event_id, correlation_id, amount) VALUES ($1, $2, $3)",
            ev.id,
            ev.correlation_id,
            ev.data["amount"],
        )


async def test_poison_and_failing_messages_are_dead_lettered_while_the_consumer_keeps_going(
    platform,
):
    topic = platform.topic("clearway.kitdemo.events.v1")
    dlt = dlt_topic(topic, "kitdemo")
    await ensure_topics(platform.kafka, [topic, dlt])
    await migrate_effects(platform.database_url)
    pool = await create_pool(platform.database_url, schema=SCHEMA)
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    ledger = Ledger()
    consumer = IdempotentConsumer(
        "kitdemo",
        pool,
        DeadLetters(producer, "kitdemo"),
        handler=ledger,
        retry=Backoff(base=0.01, max_attempts=3),
    )
    broker = make_broker(platform.kafka)
    subscribe_idempotent(broker, consumer, topic, group_id="kitdemo")
    await broker.start()
    try:

        def ev(i: int, amount: int) -> Event:
            return new_event(
                type="kit.demo",
                source="/tests",
                aggregate_id=f"agg_{i}",
                aggregate_version=1,
                data={"amount": amount},
                correlation_id=f"corr_{i}",
            )

        good1, negative, flaky, good2 = ev(1, 10), ev(2, -5), ev(3, 13), ev(4, 20)
        for e in (good1,):
            await producer.send_and_wait(topic, e.body(), key=e.key, headers=e.headers())
        await producer.send_and_wait(
            topic,
            b"\xff not json",
            key=b"agg_x",
            headers=[
                ("ce_id", b"evt_bad"),
                ("ce_type", b"kit.demo"),
                ("ce_source", b"/t"),
                ("ce_subject", b"agg_x"),
            ],
        )
        await producer.send_and_wait(topic, b"{}", key=b"agg_y", headers=[])  # no CloudEvent
        for e in (negative, flaky, good2):
            await producer.send_and_wait(topic, e.body(), key=e.key, headers=e.headers())

        async def good_applied() -> bool:
            return await pool.fetchval("SELECT count(*) FROM effects") == 2

        await eventually(good_applied)
        letters = []

        async def four_dead_letters() -> bool:
            letters[:] = await dlt_cli.list_dead_letters(platform.kafka, dlt)
            return len(letters) == 4

        await eventually(four_dead_letters, timeout=30, interval=0.5)
        by_reason = {d.meta("error_type"): d for d in letters}
        assert set(by_reason) == {"MalformedEvent", "PermanentError", "RuntimeError"}
        malformed = sorted(
            d.meta("error_message") for d in letters if d.meta("error_type") == "MalformedEvent"
        )
        assert "missing CloudEvents headers" in malformed[0]
        assert "not JSON" in malformed[1]
        assert by_reason["PermanentError"].meta("attempts") == "1"
        assert by_reason["RuntimeError"].meta("attempts") == "3"
        for d in letters:
            assert d.meta("original_topic") == topic
            assert d.meta("original_offset") is not None
            assert d.meta("consumer_group") == "kitdemo"

        # Fix the handler, redrive: the two business failures now apply; the
        # undecodable ones come back and land in the DLT again (loud, not lost).
        ledger.fixed = True
        redriven = await dlt_cli.redrive(platform.kafka, dlt)
        assert len(redriven) == 4

        async def all_applied() -> bool:
            return await pool.fetchval("SELECT count(*) FROM effects") == 4

        await eventually(all_applied)
        # Exactly the two undecodable records are dead-lettered a second time, as
        # they were sent; the two business failures, now applied, never come back.
        again: list = []

        async def malformed_back() -> bool:
            again[:] = await dlt_cli.redrive(platform.kafka, dlt, dry_run=True)
            return len(again) >= 2

        await eventually(malformed_back, timeout=30, interval=0.5)
        assert len(again) == 2, [(d.key, d.meta("error_type")) for d in again]
        assert {d.meta("error_type") for d in again} == {"MalformedEvent"}
        assert {(d.key, d.value) for d in again} == {
            (b"agg_x", b"\xff not json"),
            (b"agg_y", b"{}"),
        }
        assert all(d.meta("original_topic") == topic for d in again)
        assert len(await dlt_cli.list_dead_letters(platform.kafka, dlt)) == 4 + 2
        amounts = sorted(r["amount"] for r in await pool.fetch("SELECT amount FROM effects"))
        assert amounts == [-5, 10, 13, 20]
    finally:
        await broker.stop()
        await producer.stop()
        await pool.close()


def test_the_dlt_cli_lists_with_reasons(stack, capsys, monkeypatch):
    import asyncio
    import uuid

    topic = f"t{uuid.uuid4().hex[:8]}.demo.g.dlt"

    async def put() -> None:
        p = idempotent_producer(stack.platform().kafka)
        await p.start()
        await p.send_and_wait(
            topic,
            b"{}",
            headers=[
                ("ce_id", b"evt_1"),
                ("dlt_error_type", b"MalformedEvent"),
                ("dlt_error_message", b"payload is not JSON"),
                ("dlt_original_topic", b"demo"),
            ],
        )
        await p.stop()

    asyncio.run(put())
    for var, value in kafka_env(stack.platform()).items():  # as an operator's shell has them
        monkeypatch.setenv(var, value)
    assert dlt_cli.main(["--bootstrap", stack.kafka_bootstrap, "--as", "admin", "list", topic]) == 0
    out = capsys.readouterr().out
    assert "MalformedEvent: payload is not JSON" in out
    assert "1 dead letter(s)" in out
