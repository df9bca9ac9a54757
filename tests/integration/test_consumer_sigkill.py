"""A consumer process SIGKILLed again and again while events flow still applies every
event exactly once, and its group's offsets end at the topic's end (docs/design.md §4.3,
ADR 0055: offsets are committed off the consume path, after the inbox commit).

The process (``sigkill_consumer.py``) runs the kit's idempotent subscriber with its
background ``OffsetCommitter``; the test restarts it after each kill and keeps
producing meanwhile (keys spread over three partitions). No kill is graceful: nothing
flushes offsets, rolls back or leaves the group. In a seeded order, 4-6 lives end:
- at a random moment 0.2-1.5 s after their first batch, while events arrive faster
  than one a few milliseconds (the kill finds the consumer fetching, inside a batch's
  transaction, or with offsets on their way to the broker);
- by the process's own SIGKILL inside the n-th batch transaction, its effects
  inserted but not committed;
- by its own SIGKILL right after the n-th inbox commit, before the batch's offsets
  reach the committer: the window random kills rarely hit (the committer sends at the
  next turn of the event loop), where the next life must get the whole batch again
  and the inbox must absorb it.
The last life drains the topic; then the effects (one row per event), the inbox (one
row per event) and the group's committed offsets (the end offsets) are checked.

``CLEARWAY_SIGKILL_SEED`` replays another sequence of kills.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from clearway.shared.db import create_pool
from clearway.shared.kafka import ensure_topics
from clearway.shared.kafka_link import KafkaLink, TopicLayout
from clearway.shared.relay import idempotent_producer
from clearway.shared.settings import PlatformSettings
from clearway.shared.testing.helpers import eventually, kafka_env

from .kit_helpers import SCHEMA, demo_event, migrate_effects

# About 50 s here: every restart waits for the group coordinator to expire the killed
# member's session (aiokafka's 10 s default) before the partitions are reassigned.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

SEED = int(os.environ.get("CLEARWAY_SIGKILL_SEED", "20055"))
PARTITIONS = 3
#: Events before the first start; events a second while a life waits for its partitions
#: and while it consumes until its kill (a busy consumer: a batch every ~10 ms).
BACKLOG, SLOW, FAST = 500, 10, 300
MAX_EVENTS = 6000
SCRIPT = Path(__file__).with_name("sigkill_consumer.py")
BATCH = re.compile(r"^batch records=(\d+) applied=(\d+) duplicates=(\d+)$", re.MULTILINE)
#: Bounds of the waits: a life's first batch (the group's rebalance included), a life
#: killing itself, the drain.
FIRST_BATCH_S, SELF_KILL_S, DRAIN_S = 45.0, 30.0, 60.0


@dataclass
class Life:
    """One run of the consumer process."""

    number: int
    moment: str
    proc: subprocess.Popen[bytes]
    out: Path
    started: float = field(default_factory=time.monotonic)
    first_batch_s: float | None = None
    killed_after_s: float | None = None
    effects_at_kill: int | None = None

    @classmethod
    def start(
        cls,
        number: int,
        moment: str,
        platform: PlatformSettings,
        topic: str,
        group: str,
        logs: Path,
    ) -> Life:
        env = {
            **os.environ,
            "CLEARWAY_DATABASE_URL": platform.database_url,
            **kafka_env(platform),
            "CLEARWAY_TOPIC_PREFIX": platform.topic_prefix,
        }
        out, err = logs / f"life{number}.out", logs / f"life{number}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), SCHEMA, topic, group]
                + ([moment] if ":" in moment else []),
                env=env,
                stdout=stdout,
                stderr=stderr,
            )
        return cls(number, moment, proc, out)

    def batches(self) -> list[tuple[int, int, int]]:
        return [tuple(map(int, m)) for m in BATCH.findall(self.out.read_text())]

    async def first_batch(self) -> None:
        deadline = self.started + FIRST_BATCH_S
        while not self.batches():
            if self.proc.poll() is not None:
                raise AssertionError(f"life {self.number} exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"life {self.number}: no batch within {FIRST_BATCH_S}s")
            await asyncio.sleep(0.01)
        self.first_batch_s = time.monotonic() - self.started

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.killed_after_s = time.monotonic() - self.started

    async def killed_itself(self) -> None:
        """Wait until the process SIGKILLed itself at its moment."""
        deadline = time.monotonic() + SELF_KILL_S
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"life {self.number}: no {self.moment} in {SELF_KILL_S}s")
            await asyncio.sleep(0.01)
        self.killed_after_s = time.monotonic() - self.started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def summary(self) -> str:
        batches = self.batches()
        last = batches[-1] if batches else (0, 0, 0)
        first = f"{self.first_batch_s:.1f}s" if self.first_batch_s is not None else "-"
        end = (
            f"killed at {self.killed_after_s:.2f}s with {self.effects_at_kill} effects"
            if self.killed_after_s is not None
            else "drained"
        )
        return (
            f"life {self.number} ({self.moment}): first batch at {first}, {end};"
            f" {len(batches)} batches, {sum(b[0] for b in batches)} records,"
            f" applied {last[1]}, inbox absorbed {last[2]}"
        )


class Flow:
    """Produces events to ``topic`` at ``rate`` per second until stopped: a burst every
    10 ms, keys spread over the partitions."""

    TICK_S = 0.01

    def __init__(self, producer, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self.rate = SLOW
        self.ids: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def send(self, n: int) -> list[asyncio.Future]:
        futures = []
        for _ in range(n):
            i = len(self.ids)
            ev = demo_event(i)
            self.ids.append(ev.id)
            futures.append(
                await self.producer.send(
                    self.topic, value=ev.body(), key=ev.key, headers=ev.headers()
                )
            )
        return futures

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        futures: list[asyncio.Future] = []
        owed = 0.0
        while not self._stop.is_set() and len(self.ids) < MAX_EVENTS:
            owed += self.rate * self.TICK_S
            futures += await self.send(int(owed))
            owed -= int(owed)
            await asyncio.sleep(self.TICK_S)
        await asyncio.gather(*futures)

    async def stop(self) -> None:
        """Stop producing and wait until Kafka acknowledged every event sent."""
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)


async def _effects(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM effects")


async def _offsets(kafka: KafkaLink, topic: str, group: str) -> tuple[dict, dict]:
    """The group's committed offset and the end offset of each partition of ``topic``."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        listed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    committed = {tp.partition: om.offset for tp, om in listed.items() if tp.topic == topic}
    reader = AIOKafkaConsumer(**kafka.client_options())
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = {tp.partition: off for tp, off in (await reader.end_offsets(tps)).items()}
    finally:
        await reader.stop()
    return committed, ends


async def test_a_consumer_sigkilled_at_random_moments_applies_every_event_exactly_once(
    platform: PlatformSettings, tmp_path: Path
):
    rng = random.Random(SEED)
    kills = rng.randint(4, 6)
    topic = platform.topic("clearway.kitdemo.sigkill.v1")
    group = f"{platform.topic_prefix}sigkill"
    await ensure_topics(platform.kafka, [topic], layout=TopicLayout(partitions=PARTITIONS))
    await migrate_effects(platform.database_url)
    pool = await create_pool(platform.database_url, schema=SCHEMA, max_size=2)
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    flow = Flow(producer, topic)
    lives: list[Life] = []
    began = time.monotonic()
    try:
        await asyncio.gather(*await flow.send(BACKLOG))
        flow.start()
        for k, moment in enumerate(_moments(rng, kills)):
            life = Life.start(k, moment, platform, topic, group, tmp_path)
            lives.append(life)
            await life.first_batch()
            if moment == "drain":
                break
            flow.rate = FAST
            if moment == "random":
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                life.kill()
            else:
                await life.killed_itself()
            flow.rate = SLOW
            life.effects_at_kill = await _effects(pool)
        await flow.stop()
        n = len(flow.ids)
        await eventually(lambda: _at_least(_effects(pool), n), timeout=DRAIN_S, interval=0.1)

        async def quiesced() -> bool:
            committed, ends = await _offsets(platform.kafka, topic, group)
            return committed == ends

        # The background committer commits what was applied, without a stop.
        await eventually(quiesced, timeout=30, interval=0.2)
        committed, ends = await _offsets(platform.kafka, topic, group)
        print(f"\nseed {SEED}: {kills} kills, {n} events, {time.monotonic() - began:.1f}s")
        for life in lives:
            print(life.summary())

        rows = await pool.fetch("SELECT event_id, count(*) AS n FROM effects GROUP BY event_id")
        twice = [r["event_id"] for r in rows if r["n"] > 1]
        assert not twice, f"{len(twice)} events applied more than once"
        assert {r["event_id"] for r in rows} == set(flow.ids), "every event applied, no other"
        inbox = await pool.fetch("SELECT event_id FROM inbox WHERE consumer = 'sigkill'")
        assert len(inbox) == n
        assert {r["event_id"] for r in inbox} == set(flow.ids), "one inbox row per event"
        assert len(ends) == PARTITIONS and sum(ends.values()) == n
        assert committed == ends, "the group's offsets at the end of every partition"
        assert all(lf.proc.returncode == -signal.SIGKILL for lf in lives[:-1])
        for before, after in itertools.pairwise(lives):
            if before.moment.startswith("committed:"):
                # Applied and in the inbox, but its offsets never reached the committer:
                # the next life got the whole batch again and the inbox absorbed it.
                assert after.batches()[-1][2] >= before.batches()[-1][0], after.summary()
    finally:
        await flow.stop()
        for life in lives:
            life.stop()
        await producer.stop()
        await pool.close()


def _moments(rng: random.Random, kills: int) -> list[str]:
    """How each life ends, in a seeded order: at a random time 0.2-1.5 s after its first
    batch (``random``), by its own SIGKILL in the n-th batch transaction or right after
    the n-th inbox commit (n of 20-100: the flow makes a batch every ~10 ms), and the
    last one drains the topic."""
    moments = ["transaction", "committed"] + ["random"] * (kills - 2)
    rng.shuffle(moments)
    exact = [f"{m}:{rng.randint(20, 100)}" if m != "random" else m for m in moments]
    return [*exact, "drain"]


async def _at_least(count, n: int) -> bool:
    return (await count) >= n
