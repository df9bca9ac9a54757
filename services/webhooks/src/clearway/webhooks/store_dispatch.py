"""The dispatcher's SQL: claim due attempts across workers, record what happened.

Claims use ``FOR UPDATE SKIP LOCKED`` and then a lease (``next_attempt_at`` moved
past the request timeout), so a worker that dies mid-request leaves the message
due again once the lease ran out; the retry carries the same ``webhook-id``.
Per-endpoint throttling (rate limit, a 429's ``Retry-After``) is the endpoint
row's ``next_allowed_at``, advanced under a row lock by whichever worker claims,
so it holds across workers and processes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg


@dataclass(frozen=True)
class Claimed:
    id: str
    endpoint_id: str
    tenant: str
    url: str
    payload: bytes
    attempt_no: int  # the number of this attempt over the message's life
    round_attempt: int  # the number of this attempt in the current schedule
    correlation_id: str | None
    traceparent: str | None
    event_type: str
    event_id: str
    queued_by: str


@dataclass(frozen=True)
class Result:
    claimed: Claimed
    outcome: str
    status: str  # the message's status after this attempt
    delay_s: float | None  # until the next attempt, when still pending
    code: int | None
    latency_ms: float
    body: str
    error: str | None
    retry_after_s: float | None


_CLAIM = """
SELECT m.id, m.endpoint_id, m.tenant, m.payload, m.attempts, m.round_attempts,
       m.correlation_id, m.traceparent, m.event_type, m.event_id, m.queued_by,
       e.url, e.disabled, e.rate_limit_per_s, e.next_allowed_at, now() AS now
FROM messages m JOIN endpoints e ON e.id = m.endpoint_id
WHERE m.status = 'pending' AND m.next_attempt_at <= now()
ORDER BY m.next_attempt_at
LIMIT $1
FOR UPDATE OF m SKIP LOCKED
"""


async def claim(conn: asyncpg.Connection, limit: int, lease_s: float) -> list[Claimed]:
    """Claim up to ``limit`` due messages (call inside a transaction)."""
    rows = await conn.fetch(_CLAIM, limit)
    if not rows:
        return []
    now: datetime = rows[0]["now"]
    skipped = [r["id"] for r in rows if r["disabled"]]
    live = [r for r in rows if not r["disabled"]]
    throttled = sorted(
        {r["endpoint_id"] for r in live if r["rate_limit_per_s"] or r["next_allowed_at"] > now}
    )
    take = [r for r in live if r["endpoint_id"] not in throttled]
    deferred: list[tuple[str, datetime]] = []
    if throttled:
        locked = await conn.fetch(
            "SELECT id, rate_limit_per_s, next_allowed_at FROM endpoints"
            " WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
            throttled,
        )
        by_endpoint: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for r in live:
            if r["endpoint_id"] in throttled:
                by_endpoint[r["endpoint_id"]].append(r)
        advanced: list[tuple[str, datetime]] = []
        for ep in locked:
            rate = ep["rate_limit_per_s"]
            step = timedelta(seconds=1 / rate) if rate else timedelta(0)
            slot = max(now, ep["next_allowed_at"])
            took = False
            for r in by_endpoint[ep["id"]]:
                if slot <= now:
                    take.append(r)
                    took = True
                else:
                    deferred.append((r["id"], slot))
                slot += step  # no rate: step 0, everyone waits for the Retry-After pause
            if took and rate:
                advanced.append((ep["id"], max(now, ep["next_allowed_at"]) + step))
        if advanced:
            await conn.executemany(
                "UPDATE endpoints SET next_allowed_at = $2 WHERE id = $1", advanced
            )
    if skipped:
        await conn.execute(
            "UPDATE messages SET status = 'skipped', next_attempt_at = NULL, updated_at = now()"
            " WHERE id = ANY($1::text[])",
            skipped,
        )
    if deferred:
        await conn.execute(
            "UPDATE messages SET next_attempt_at = u.at FROM unnest($1::text[],"
            " $2::timestamptz[]) AS u(id, at) WHERE messages.id = u.id",
            [d[0] for d in deferred],
            [d[1] for d in deferred],
        )
    if not take:
        return []
    await conn.execute(
        "UPDATE messages SET attempts = attempts + 1, round_attempts = round_attempts + 1,"
        " next_attempt_at = now() + make_interval(secs => $2), updated_at = now()"
        " WHERE id = ANY($1::text[])",
        [r["id"] for r in take],
        lease_s,
    )
    return [
        Claimed(
            id=r["id"],
            endpoint_id=r["endpoint_id"],
            tenant=r["tenant"],
            url=r["url"],
            payload=bytes(r["payload"]),
            attempt_no=r["attempts"] + 1,
            round_attempt=r["round_attempts"] + 1,
            correlation_id=r["correlation_id"],
            traceparent=r["traceparent"],
            event_type=r["event_type"],
            event_id=r["event_id"],
            queued_by=r["queued_by"],
        )
        for r in take
    ]


async def record(conn: asyncpg.Connection, results: Sequence[Result]) -> list[Result]:
    """Store attempts and move messages on; returns the results that were still ours.

    A result whose message was claimed again meanwhile (its lease ran out) is
    kept in the attempt log but does not overwrite the newer attempt's state.
    """
    await conn.copy_records_to_table(
        "attempts",
        records=[
            (
                r.claimed.id,
                r.claimed.attempt_no,
                r.claimed.queued_by,
                r.outcome,
                r.code,
                r.latency_ms,
                r.body,
                r.error,
            )
            for r in results
        ],
        columns=[
            "message_id",
            "attempt_no",
            "trigger",
            "outcome",
            "response_code",
            "latency_ms",
            "response_body",
            "error",
        ],
    )
    rows = await conn.fetch(
        "UPDATE messages m SET status = u.status, last_status_code = u.code,"
        " next_attempt_at = CASE WHEN u.status = 'pending'"
        "   THEN now() + make_interval(secs => u.delay) END,"
        " delivered_at = CASE WHEN u.status = 'delivered' THEN now() ELSE m.delivered_at END,"
        " updated_at = now()"
        " FROM unnest($1::text[], $2::text[], $3::int[], $4::float8[], $5::int[])"
        "   AS u(id, status, code, delay, attempt_no)"
        " WHERE m.id = u.id AND m.attempts = u.attempt_no AND m.status = 'pending'"
        " RETURNING m.id",
        [r.claimed.id for r in results],
        [r.status for r in results],
        [r.code for r in results],
        [r.delay_s or 0.0 for r in results],
        [r.claimed.attempt_no for r in results],
    )
    ours = {r["id"] for r in rows}
    return [r for r in results if r.claimed.id in ours]


async def dead_letter(conn: asyncpg.Connection, results: Sequence[Result], reason: str) -> None:
    await conn.executemany(
        "INSERT INTO dead_letters (message_id, endpoint_id, tenant, reason)"
        " VALUES ($1, $2, $3, $4)",
        [(r.claimed.id, r.claimed.endpoint_id, r.claimed.tenant, reason) for r in results],
    )


async def endpoint_health(
    conn: asyncpg.Connection,
    *,
    succeeded: Sequence[str],
    failed: Sequence[str],
    gone: Sequence[str],
    pause: Sequence[tuple[str, float]],
    disable_after_s: float,
) -> list[asyncpg.Record]:
    """Track continuous failure; disable endpoints that are gone or failed too long.

    Returns the endpoints disabled by this call (id, tenant, url, disabled_reason, version).
    """
    if succeeded:
        await conn.execute(
            "UPDATE endpoints SET failing_since = NULL"
            " WHERE id = ANY($1::text[]) AND failing_since IS NOT NULL",
            sorted(set(succeeded)),
        )
    if pause:
        await conn.executemany(
            "UPDATE endpoints SET next_allowed_at = GREATEST(next_allowed_at,"
            " now() + make_interval(secs => $2)) WHERE id = $1",
            sorted(pause),
        )
    disabled: list[asyncpg.Record] = []
    if failed:
        await conn.execute(
            "UPDATE endpoints SET failing_since = now()"
            " WHERE id = ANY($1::text[]) AND failing_since IS NULL",
            sorted(set(failed)),
        )
        disabled += await conn.fetch(
            "UPDATE endpoints SET disabled = true, updated_at = now(), version = version + 1,"
            " disabled_reason ="
            " 'failing continuously since '"
            " || to_char(failing_since, 'YYYY-MM-DD\"T\"HH24:MI:SSOF')"
            " WHERE id = ANY($1::text[]) AND NOT disabled"
            " AND failing_since <= now() - make_interval(secs => $2)"
            " RETURNING id, tenant, url, disabled_reason, version",
            sorted(set(failed)),
            disable_after_s,
        )
    if gone:
        disabled += await conn.fetch(
            "UPDATE endpoints SET disabled = true, updated_at = now(), version = version + 1,"
            " disabled_reason = 'the receiver answered 410 Gone'"
            " WHERE id = ANY($1::text[]) AND NOT disabled"
            " RETURNING id, tenant, url, disabled_reason, version",
            sorted(set(gone)),
        )
    return disabled
