"""One chaos run: load, faults on a timeline, quiescence, then the invariants."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

import asyncpg
import httpx

from . import invariants as inv
from .proxy import Faults, LossyProxy
from .receivers import FlakyReceiver
from .system import SERVICES, System, log
from .traffic import Client, channel


@dataclass(frozen=True)
class Plan:
    """The size of a run and the shape of its faults."""

    intents: int = 5000
    rate: float = 50.0  # intents started per second
    kafka_outage_s: float = 60.0
    kills_per_service: int = 2
    blip_s: float = 10.0  # receiver "blip" fails this long, within the retry schedule
    outage_s: float = 60.0  # "outage" fails a quarter for longer than the schedule: dead letters
    quiesce_timeout_s: float = 900.0
    #: the client gives up on an intent this long after the load ends (counted unresolved)
    client_patience_s: float = 600.0
    seed: int = 17

    @property
    def load_s(self) -> float:
        return self.intents / self.rate


@dataclass
class Timeline:
    """What was injected, when (seconds after the load started)."""

    entries: list[tuple[float, str]]
    t0: float

    def note(self, what: str) -> None:
        at = time.monotonic() - self.t0
        self.entries.append((at, what))
        log(f"t+{at:.1f}s {what}")


async def _kafka_outage(
    system: System, plan: Plan, tl: Timeline, at: float, receivers: list[FlakyReceiver]
) -> None:
    await asyncio.sleep(at)
    tl.note("Kafka broker SIGKILLed")
    await asyncio.to_thread(system.kill_kafka)
    await asyncio.sleep(plan.kafka_outage_s)
    await asyncio.to_thread(system.start_kafka)
    tl.note(f"Kafka broker back after {time.monotonic() - tl.t0 - at:.0f} s")
    # the backlog of the outage reaches the partners while they fail
    for r in receivers:
        r.arm()
    tl.note(
        ", ".join(
            f"receiver {r.name} answers {r.status} to {r.share:.0%} of messages for {r.fail_s:g} s"
            " from its next delivery on"
            for r in receivers
        )
    )


async def _postgres_restart(system: System, tl: Timeline, at: float) -> None:
    await asyncio.sleep(at)
    tl.note("Postgres stopped with pg_ctl -m immediate")
    await asyncio.to_thread(system.restart_postgres_immediate)
    tl.note("Postgres back (crash recovery done)")


async def _kills(system: System, plan: Plan, tl: Timeline, rng: random.Random) -> None:
    span = plan.load_s
    times = sorted(
        (rng.uniform(0.05 * span, 0.95 * span), svc)
        for svc in SERVICES
        for _ in range(plan.kills_per_service)
    )
    for at, svc in times:
        await asyncio.sleep(max(0.0, at - (time.monotonic() - tl.t0)))
        down = rng.uniform(0.0, 2.0)
        await asyncio.to_thread(system.kill, svc, down)
        tl.note(f"{svc} SIGKILLed, restarted {down:.1f} s later")


async def _load(client: Client, plan: Plan, t0: float) -> None:
    slots = asyncio.Semaphore(128)

    async def one(i: int) -> None:
        async with slots:
            await client.send(i)

    tasks = []
    for i in range(plan.intents):
        await asyncio.sleep(max(0.0, t0 + i / plan.rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)


async def _progress(client: Client, plan: Plan, t0: float, stop: asyncio.Event) -> None:
    """Once the load should be over, say every 15 s which intents are still unanswered
    and what their senders wait for: a run that hangs shows where."""
    await asyncio.sleep(plan.load_s + 15)
    while not stop.is_set():
        waiting = dict(client.out.waiting)
        if waiting:
            shown = "; ".join(f"{k}: {w}" for k, w in sorted(waiting.items())[:5])
            log(f"t+{time.monotonic() - t0:.0f}s {len(waiting)} intent(s) unanswered, e.g. {shown}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 15)


async def _snapshot(db: asyncpg.Connection, run_id: str) -> tuple[int, ...]:
    row = await db.fetchrow(
        "SELECT"
        " (SELECT count(*) FROM transfer.transfers WHERE status IN ('pending', 'submitted')),"
        " (SELECT count(*) FROM transfer.idempotency_keys WHERE key LIKE $1"
        "   AND state = 'completed'),"
        " (SELECT count(*) FROM webhooks.messages WHERE status = 'pending'),"
        " (SELECT count(*) FROM transfer.outbox) + (SELECT count(*) FROM webhooks.outbox)"
        "   + (SELECT count(*) FROM consent.outbox) + (SELECT count(*) FROM audit.outbox),"
        " (SELECT count(*) FROM webhooks.messages),"
        " (SELECT count(*) FROM audit.records)",
        f"chaos-{run_id}-%",
    )
    return tuple(row)


async def _quiesce(system: System, plan: Plan, run_id: str, tl: Timeline) -> bool:
    """Wait (bounded) until nothing is open, pending or unpublished and the counts stand."""
    deadline = time.monotonic() + plan.quiesce_timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            db = await asyncpg.connect(system.database_url)
            try:
                snap = await _snapshot(db, run_id)
            finally:
                await db.close()
        except (OSError, asyncpg.PostgresError):
            snap = None
        if snap is not None:
            open_, keys, pending, outbox, *_ = snap
            if (open_, keys, pending, outbox) == (0, plan.intents, 0, 0) and snap == last:
                tl.note(f"quiescent: {snap[4]} webhook messages, {snap[5]} audit records")
                return True
            last = snap
        await asyncio.sleep(3)
    tl.note(f"not quiescent within {plan.quiesce_timeout_s:.0f} s: {last}")
    return False


async def _token(system: System, role: str, scope: str) -> str:
    cid, secret = system.client(role)
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{system.url('consent')}/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(cid, secret),
        )
    r.raise_for_status()
    return str(r.json()["access_token"])


async def _endpoint(system: System, token: str, url: str) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{system.url('webhooks')}/v1/endpoints",
            json={"url": url, "event_types": ["transfer.*"]},
            headers={"Authorization": f"Bearer {token}"},
        )
    r.raise_for_status()
    return str(r.json()["id"])


@dataclass
class Result:
    checks: list[inv.Check]
    timeline: list[tuple[float, str]]
    proxy: dict[str, int]
    client: dict[str, object]
    seconds: dict[str, float]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


async def run(system: System, plan: Plan, run_id: str) -> Result:
    started = time.monotonic()
    rng = random.Random(plan.seed)
    await system.start_services()
    hooks = await _token(system, "webhooks", "webhooks:endpoints:manage")
    blip = FlakyReceiver("blip", plan.blip_s)
    outage = FlakyReceiver("outage", plan.outage_s, share=0.25, status=500)
    async with blip.serving() as blip_url, outage.serving() as outage_url:
        endpoints = {
            await _endpoint(system, hooks, blip_url): blip,
            await _endpoint(system, hooks, outage_url): outage,
        }
        proxy = LossyProxy(system.ports["transfer"], Faults(), seed=plan.seed)
        await proxy.start()
        t0 = time.monotonic()
        ready_s = t0 - started
        client = Client(
            system, proxy.port, run_id, deadline=t0 + plan.load_s + plan.client_patience_s
        )
        await client.answers.start()
        tl = Timeline([], t0)
        tl.note(f"load starts: {plan.intents} intents at {plan.rate:g}/s")
        stop = asyncio.Event()
        supervisor = asyncio.create_task(system.supervise(stop))
        progress = asyncio.create_task(_progress(client, plan, t0, stop))
        kafka_at = 0.15 * plan.load_s
        pg_at = 0.6 * plan.load_s  # may fall in the Kafka outage: faults compound
        try:
            await asyncio.gather(
                _load(client, plan, t0),
                _kafka_outage(system, plan, tl, kafka_at, [blip, outage]),
                _postgres_restart(system, tl, pg_at),
                _kills(system, plan, tl, rng),
            )
            tl.note("load and faults done")
            load_s = time.monotonic() - t0
            for svc in SERVICES:  # every service back before waiting for quiescence
                await system.healthy(svc, supervised=True)
            quiet = await _quiesce(system, plan, run_id, tl)
        finally:
            stop.set()
            await supervisor
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
            await client.close()
            await proxy.stop()
        quiesce_s = time.monotonic() - t0 - load_s
        checks = await _check(system, plan, client, endpoints)
        if not quiet:
            checks.insert(0, inv.Check("quiescence", "reached", "not reached", ["timed out"]))
    out = client.out
    return Result(
        checks,
        tl.entries,
        dict(proxy.counts),
        {
            "http attempts": out.attempts,
            "errors retried": dict(sorted(out.errors.items())),
            "kafka intents": sum(1 for i in range(plan.intents) if channel(i) != "http"),
            "service restarts": dict(sorted(system.restarts.items())),
            "deliveries refused by the receivers": {r.name: r.refused for r in (blip, outage)},
        },
        {
            "start": ready_s,
            "load + faults": load_s,
            "quiescence": quiesce_s,
            "checks": time.monotonic() - t0 - load_s - quiesce_s,
        },
    )


async def _check(system: System, plan: Plan, client: Client, endpoints) -> list[inv.Check]:
    keys = [client.key(i) for i in range(plan.intents)]
    admin = system.link("admin")
    read = await inv.read_topics(admin, [*inv.EVENT_TOPICS, *inv.dlt_topics()])
    events = [e for t in inv.EVENT_TOPICS for e in read[t]]
    transfer_events = read[inv.EVENT_TOPICS[0]]
    dead = {e.id for t in inv.dlt_topics() for e in read[t]}
    auditor = await _token(system, "auditor", "audit:read")
    db = await asyncpg.connect(system.database_url)
    try:
        return [
            await inv.intents_final(db, client.out, keys, transfer_events),
            await inv.one_charge_per_transfer(db),
            await inv.ledger_balanced(db),
            await inv.events_delivered(db, transfer_events, dead, endpoints),
            await inv.audit_complete(db, events),
            await inv.audit_verified(system.url("audit"), auditor, plan.quiesce_timeout_s),
        ]
    finally:
        await db.close()
