"""What must hold after the faults, checked with SQL on each service's schema, the
events as the topics hold them, and the audit service's own verification.

Each check gives one row: what was expected, what was found, the violations (a
few examples of each). None is weakened by the faults: a run passes only when
every row is clean.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from clearway.shared.dlt import dlt_topic
from clearway.shared.events import Event, MalformedEvent
from clearway.shared.kafka_link import KafkaLink

from .receivers import FlakyReceiver
from .system import TENANT
from .traffic import Outcome

FINAL = ("settled", "failed", "canceled")
EVENT_TOPICS = tuple(f"clearway.{d}.events.v1" for d in ("transfer", "webhooks", "consent"))


@dataclass
class Check:
    name: str
    expected: str
    found: str
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def _examples(label: str, items, n: int = 3) -> list[str]:
    items = sorted(items)
    return [f"{label}: {len(items)} (e.g. {', '.join(map(str, items[:n]))})"] if items else []


async def read_topics(link: KafkaLink, topics: list[str]) -> dict[str, list[Event]]:
    """Every event of ``topics`` up to their end offsets now, deduplicated by id."""
    consumer = AIOKafkaConsumer(**link.client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: dict[str, dict[str, Event]] = {t: {} for t in topics}
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        if not tps:
            return {t: [] for t in topics}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= end[tp]:
                        continue
                    try:
                        ev = Event.from_kafka(r.headers, r.value)
                    except MalformedEvent:
                        continue
                    out[tp.topic][ev.id] = ev
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
        if pending:
            raise RuntimeError(f"could not read {sorted(map(str, pending))} to the end")
    finally:
        await consumer.stop()
    return {t: list(evs.values()) for t, evs in out.items()}


async def intents_final(db: asyncpg.Connection, out: Outcome, keys: list[str], events) -> Check:
    rows = await db.fetch(
        "SELECT k.key, k.state, t.id, t.status FROM transfer.idempotency_keys k"
        " LEFT JOIN transfer.transfers t ON t.tenant = k.tenant AND t.reference = k.reference"
        " WHERE k.tenant = $1 AND k.key = ANY($2::text[])",
        TENANT,
        keys,
    )
    by_key = {r["key"]: r for r in rows}
    made = await db.fetchval("SELECT count(*) FROM transfer.transfers WHERE tenant = $1", TENANT)
    v = []
    if made != len(keys):  # the stack is the run's own: every transfer is one of its keys
        v.append(f"{made} transfers for {len(keys)} keys")
    v += _examples("refused by the API", [f"{k} ({why[:60]})" for k, why in out.refused.items()])
    v += _examples("never accepted (client deadline)", out.unresolved)
    v += _examples("different transfer ids for one key", out.conflicting)
    v += _examples(
        "no transfer for the key", [k for k in keys if not (by_key.get(k) or {}).get("id")]
    )
    v += _examples(
        "transfer not final",
        [f"{k}={r['status']}" for k, r in by_key.items() if r["id"] and r["status"] not in FINAL],
    )
    v += _examples(
        "client got another transfer than the key's",
        [k for k, tid in out.accepted.items() if k in by_key and by_key[k]["id"] != tid],
    )
    # each Kafka intent message answered exactly once (a refusal of an expired token
    # included: the client sent such an intent again as a new message)
    answers: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        if ev.type in ("transfer.accepted", "transfer.rejected"):
            answers[ev.data["intent_id"]].add(ev.id)
    v += _examples("Kafka intent without an answer", out.intents.keys() - answers.keys())
    v += _examples("Kafka intent answered twice", [i for i, a in answers.items() if len(a) > 1])
    final = sum(1 for r in by_key.values() if r["id"] and r["status"] in FINAL)
    statuses = Counter(r["status"] for r in by_key.values() if r["id"])
    return Check(
        "every accepted intent final",
        f"{len(keys)} keys, each one transfer in a final state",
        f"{final} final ({', '.join(f'{s} {n}' for s, n in sorted(statuses.items()))})",
        v,
    )


async def one_charge_per_transfer(db: asyncpg.Connection) -> Check:
    rows = await db.fetch(
        "SELECT t.id, t.status, t.amount AS t_amount, t.rail_charge_id, c.reference,"
        " c.charge_id, c.amount AS c_amount, c.status AS c_status"
        " FROM transfer.transfers t FULL JOIN rail.charges c ON c.reference = t.reference"
    )
    requests = await db.fetchval("SELECT count(*) FROM rail.charge_requests")
    v = []
    v += _examples("charge without a transfer", [r["reference"] for r in rows if r["id"] is None])
    settled = [r for r in rows if r["status"] == "settled"]
    v += _examples(
        "settled without its charge", [r["id"] for r in settled if r["charge_id"] is None]
    )
    v += _examples(
        "charge id or amount differs",
        [
            r["id"]
            for r in settled
            if r["charge_id"] is not None
            and (r["charge_id"] != r["rail_charge_id"] or r["c_amount"] != r["t_amount"])
        ],
    )
    v += _examples(
        "money moved for a transfer not settled",
        [
            r["id"]
            for r in rows
            if r["id"] and r["status"] != "settled" and r["c_status"] == "settled"
        ],
    )
    charges = sum(1 for r in rows if r["charge_id"] is not None)
    return Check(
        "one rail charge per transfer",
        f"{len(settled)} settled transfers, one charge each",
        f"{charges} charges ({requests} charge requests)",
        v,
    )


async def ledger_balanced(db: asyncpg.Connection) -> Check:
    sums = await db.fetch(
        "SELECT currency, sum(amount)::bigint AS total, count(*) AS legs"
        " FROM transfer.ledger_postings GROUP BY currency"
    )
    per = await db.fetch(
        "SELECT t.id, t.status, t.amount,"
        " count(p.id) FILTER (WHERE p.leg = 'debit' AND p.amount = -t.amount) AS debits,"
        " count(p.id) FILTER (WHERE p.leg = 'credit' AND p.amount = t.amount) AS credits,"
        " count(p.id) AS legs"
        " FROM transfer.transfers t LEFT JOIN transfer.ledger_postings p ON p.transfer_id = t.id"
        " GROUP BY t.id"
    )
    v = []
    v += _examples(
        "currency not balanced", [f"{r['currency']} {r['total']}" for r in sums if r["total"]]
    )
    v += _examples(
        "settled without one debit and one credit of its amount",
        [
            r["id"]
            for r in per
            if r["status"] == "settled" and (r["debits"], r["credits"], r["legs"]) != (1, 1, 2)
        ],
    )
    v += _examples(
        "legs of a transfer not settled",
        [r["id"] for r in per if r["status"] != "settled" and r["legs"]],
    )
    legs = sum(r["legs"] for r in sums)
    total = ", ".join(f"{r['currency']} {r['total']:+d}" for r in sums) or "none"
    return Check(
        "ledger balanced", "debits + credits = 0 per currency", f"{legs} legs, sum {total}", v
    )


async def events_delivered(
    db: asyncpg.Connection,
    events: list[Event],
    dead_lettered: set[str],
    endpoints: dict[str, FlakyReceiver],
) -> Check:
    wanted = [e for e in events if e.tenant == TENANT and e.type.startswith("transfer.")]
    rows = await db.fetch(
        "SELECT m.id, m.endpoint_id, m.event_id, m.status,"
        " EXISTS (SELECT 1 FROM webhooks.dead_letters d WHERE d.message_id = m.id) AS dead"
        " FROM webhooks.messages m WHERE m.endpoint_id = ANY($1::text[])",
        list(endpoints),
    )
    by = {(r["endpoint_id"], r["event_id"]): r for r in rows}
    v, missing, pending, unseen, undead = [], [], [], [], []
    delivered = dead = 0
    for ep, receiver in endpoints.items():
        for ev in wanted:
            r = by.get((ep, ev.id))
            if r is None:
                if ev.id in dead_lettered:
                    dead += 1
                else:
                    missing.append(ev.id)
            elif r["status"] == "delivered":
                delivered += 1
                if r["id"] not in receiver.received:
                    unseen.append(r["id"])
            elif r["status"] == "failed":
                dead += 1
                if not r["dead"]:
                    undead.append(r["id"])
            else:
                pending.append(f"{r['id']}={r['status']}")
    v += _examples("silently dropped (no message)", missing)
    v += _examples("still not final", pending)
    v += _examples("delivered but the receiver never got it", unseen)
    v += _examples("failed without a dead letter", undead)
    return Check(
        "every event delivered or dead-lettered",
        f"{len(wanted)} transfer events x {len(endpoints)} endpoints",
        f"{delivered} delivered, {dead} dead-lettered, {len(missing)} silent drops",
        v,
    )


async def audit_complete(db: asyncpg.Connection, events: list[Event]) -> Check:
    recorded = {
        r["e"]
        for r in await db.fetch(
            "SELECT content::jsonb ->> 'source_event_id' AS e FROM audit.records"
        )
    }
    missing = [e.id for e in events if e.id not in recorded]
    return Check(
        "every event in the audit trail",
        f"{len(events)} events on the transfer, webhooks and consent topics",
        f"{len(events) - len(missing)} recorded",
        _examples("not recorded", missing),
    )


async def audit_verified(audit_url: str, token: str, timeout_s: float) -> Check:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=audit_url, headers=headers, timeout=30) as http:
        r = await http.post("/v1/audit/verifications")
        if r.status_code != 202:
            return Check("audit verification ok", "ok", f"HTTP {r.status_code}", [r.text[:200]])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = (await http.get(r.headers["location"])).json()
            if job["state"] in ("done", "error"):
                ok = job.get("ok") is True
                detail = {k: job[k] for k in ("state", "ok", "records", "error") if k in job}
                return Check(
                    "audit verification ok", "ok", str(detail), [] if ok else [str(job)[:300]]
                )
            await asyncio.sleep(1)
    return Check("audit verification ok", "ok", "no answer", [f"not done within {timeout_s:.0f} s"])


def table(checks: list[Check]) -> str:
    """The checks as a Markdown table (also readable on a terminal)."""
    lines = ["| invariant | expected | found | result |", "|---|---|---|---|"]
    for c in checks:
        result = "ok" if c.ok else "VIOLATED: " + "; ".join(c.violations)
        lines.append(f"| {c.name} | {c.expected} | {c.found} | {result} |")
    return "\n".join(lines)


def dlt_topics() -> list[str]:
    """Where the webhooks consumer dead-letters events it cannot fan out."""
    return [dlt_topic(t, "webhooks") for t in EVENT_TOPICS]
