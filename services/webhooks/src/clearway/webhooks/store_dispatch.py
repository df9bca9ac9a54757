"""The dispatcher's SQL: claim due attempts fairly across workers, record what happened.

Claims (docs/design.md §6) lock endpoints, not a global queue: the due endpoints
served least recently first (``last_claimed_at``, round-robin), ``FOR UPDATE
SKIP LOCKED`` so workers and processes share them, then each endpoint's due
messages up to the quota the caller gives it (its concurrency cap, one for a
half-open circuit breaker or a rate limit). Each claimed message gets a lease
(``leased_until``, past the attempt deadline), so a worker that dies
mid-request leaves it due again once the lease ran out, with the same
``webhook-id``. The lease column is in no index, so a claim is a HOT update of
the message row (docs/adr/0052); a message is due when ``next_attempt_at`` has
come and it holds no live lease (:data:`DUE`). An endpoint's ``next_allowed_at``
pauses it (rate-limit slot, a 429's ``Retry-After``, an open breaker) for every
worker and process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

#: A pending message whose time has come and which no worker holds (the lease
#: ran out or was never taken): the one definition of "due" of every query here.
DUE = (
    "m.status = 'pending' AND m.next_attempt_at <= now()"
    " AND (m.leased_until IS NULL OR m.leased_until <= now())"
)


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
    ed25519: bool = False  # the endpoint opted into v1a signatures


@dataclass(frozen=True)
class DueEndpoint:
    id: str
    tenant: str
    rate_limit_per_s: float | None
    consecutive_failures: int
    failing: bool  # failures in a row, or failing continuously: a success has news


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
    pause_s: float | None  # how long a 429 paused the endpoint (already clamped)


async def due_endpoints(
    conn: asyncpg.Connection, limit: int, exclude: Sequence[str]
) -> list[DueEndpoint]:
    """Lock up to ``limit`` live, unpaused endpoints with due messages, least recently
    claimed first, skipping ``exclude`` and endpoints another claim holds."""
    rows = await conn.fetch(
        "SELECT e.id, e.tenant, e.rate_limit_per_s, e.consecutive_failures,"
        " (e.consecutive_failures > 0 OR e.failing_since IS NOT NULL) AS failing FROM endpoints e"
        " WHERE NOT e.disabled AND e.next_allowed_at <= now() AND e.id <> ALL($2::text[])"
        f"  AND EXISTS (SELECT 1 FROM messages m WHERE m.endpoint_id = e.id AND {DUE})"
        " ORDER BY e.last_claimed_at, e.id LIMIT $1"
        " FOR UPDATE OF e SKIP LOCKED",
        limit,
        list(exclude),
    )
    return [DueEndpoint(**dict(r)) for r in rows]


# Only unindexed columns change (no updated_at, no next_attempt_at): a HOT update.
_CLAIM = f"""
WITH picked AS (
    SELECT m.id
    FROM unnest($1::text[], $2::int[]) AS q(endpoint_id, n)
    CROSS JOIN LATERAL (
        SELECT m.id FROM messages m
        WHERE m.endpoint_id = q.endpoint_id AND {DUE}
        ORDER BY m.next_attempt_at
        LIMIT q.n
        FOR UPDATE SKIP LOCKED
    ) m
)
UPDATE messages m SET attempts = m.attempts + 1, round_attempts = m.round_attempts + 1,
    leased_until = now() + make_interval(secs => $3)
FROM picked, endpoints e
WHERE m.id = picked.id AND e.id = m.endpoint_id
RETURNING m.id, m.endpoint_id, m.tenant, m.payload, m.attempts, m.round_attempts,
    m.correlation_id, m.traceparent, m.event_type, m.event_id, m.queued_by, e.url,
    e.ed25519_signatures
"""


async def claim(
    conn: asyncpg.Connection,
    quotas: Mapping[str, int],
    lease_s: float,
    *,
    rate_limited: Mapping[str, float],
    probing: Sequence[str],
) -> list[Claimed]:
    """Claim up to ``quotas[endpoint]`` due messages of each (locked) endpoint and lease
    them for ``lease_s``; call inside the transaction of :func:`due_endpoints`.

    A rate-limited endpoint's next slot moves ``1/rate`` on; a ``probing`` endpoint
    (half-open breaker) is held for the lease, so that no one else probes it before
    its probe is recorded.
    """
    ids = sorted(quotas)
    rows = await conn.fetch(_CLAIM, ids, [quotas[i] for i in ids], lease_s)
    await conn.execute(
        "UPDATE endpoints e SET last_claimed_at = clock_timestamp(),"
        " next_allowed_at = CASE"
        "  WHEN e.id = ANY($3::text[]) THEN now() + make_interval(secs => $4)"
        # the slot runs from now, not from the transaction's start (now())
        "  WHEN u.step > 0"
        "   THEN GREATEST(clock_timestamp(), e.next_allowed_at) + make_interval(secs => u.step)"
        "  ELSE e.next_allowed_at END"
        " FROM unnest($1::text[], $2::float8[]) AS u(id, step) WHERE e.id = u.id",
        ids,
        [1.0 / rate_limited[i] if i in rate_limited else 0.0 for i in ids],
        list(probing),
        lease_s,
    )
    return [
        Claimed(
            id=r["id"],
            endpoint_id=r["endpoint_id"],
            tenant=r["tenant"],
            url=r["url"],
            payload=bytes(r["payload"]),
            attempt_no=r["attempts"],  # as leased: this attempt's number
            round_attempt=r["round_attempts"],
            correlation_id=r["correlation_id"],
            traceparent=r["traceparent"],
            event_type=r["event_type"],
            event_id=r["event_id"],
            queued_by=r["queued_by"],
            ed25519=r["ed25519_signatures"],
        )
        for r in rows
    ]


async def skip_disabled(conn: asyncpg.Connection, limit: int) -> int:
    """Store due messages of disabled endpoints as ``skipped`` (replayable); how many."""
    result: str = await conn.execute(
        "UPDATE messages SET status = 'skipped', next_attempt_at = NULL, leased_until = NULL,"
        " updated_at = now()"
        " WHERE id IN (SELECT m.id FROM endpoints e JOIN messages m ON m.endpoint_id = e.id"
        f"  WHERE e.disabled AND {DUE}"
        "  LIMIT $1 FOR UPDATE OF m SKIP LOCKED)",
        limit,
    )
    return int(result.split()[-1])


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
        " leased_until = NULL, updated_at = now()"
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
    await conn.execute(
        "INSERT INTO dead_letters (message_id, endpoint_id, tenant, reason)"
        " SELECT u.m, u.e, u.t, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(m, e, t)",
        [r.claimed.id for r in results],
        [r.claimed.endpoint_id for r in results],
        [r.claimed.tenant for r in results],
        reason,
    )


@dataclass(frozen=True)
class Health:
    """What one batch of attempts says about one endpoint."""

    endpoint_id: str
    succeeded: bool  # some attempt of the batch succeeded
    failures: int  # attempts counting against the breaker after the batch's last success
    last_ok: bool  # the batch's last attempt succeeded (the endpoint is not failing)
    pause_s: float  # longest pause a 429 asked for (0: none)
    breaker_pause_s: float | None  # the breaker's pause, when it is open after the batch


async def endpoint_health(
    conn: asyncpg.Connection, health: Sequence[Health], *, threshold: int
) -> list[asyncpg.Record]:
    """Count failures in a row, pause endpoints (429, open breaker), close the breaker on
    success, track continuous failure. Returns ``(id, consecutive_failures)`` as now.

    The caller computes the breaker's pause from the count it will reach, so the
    rule stays in the domain (:class:`clearway.webhooks.domain.Breaker`).
    """
    hs = sorted(health, key=lambda h: h.endpoint_id)  # one lock order for every worker
    return await conn.fetch(
        "UPDATE endpoints e SET"
        " consecutive_failures = CASE WHEN u.ok THEN u.fails"
        "   ELSE e.consecutive_failures + u.fails END,"
        " failing_since = CASE WHEN u.last_ok THEN NULL"
        "   ELSE coalesce(e.failing_since, now()) END,"
        " next_allowed_at = GREATEST("
        # a breaker that was open or probing restarts from now: success closes it, a
        # failure pauses it anew (a 429 or rate-limit slot is in u.pause / the claim)
        "   CASE WHEN e.consecutive_failures >= $6 THEN now() ELSE e.next_allowed_at END,"
        "   now() + make_interval(secs => u.pause),"
        "   now() + make_interval(secs => coalesce(u.breaker, 0)))"
        " FROM unnest($1::text[], $2::bool[], $3::int[], $4::float8[], $5::float8[],"
        "   $7::bool[]) AS u(id, ok, fails, pause, breaker, last_ok)"
        " WHERE e.id = u.id RETURNING e.id, e.consecutive_failures",
        [h.endpoint_id for h in hs],
        [h.succeeded for h in hs],
        [h.failures for h in hs],
        [h.pause_s for h in hs],
        [h.breaker_pause_s for h in hs],
        threshold,
        [h.last_ok for h in hs],
    )


async def consecutive_failures(
    conn: asyncpg.Connection, endpoint_ids: Sequence[str]
) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT id, consecutive_failures FROM endpoints WHERE id = ANY($1::text[])"
        " ORDER BY id FOR UPDATE",
        sorted(set(endpoint_ids)),
    )
    return {r["id"]: r["consecutive_failures"] for r in rows}


async def disable_failing(
    conn: asyncpg.Connection, *, failed: Sequence[str], gone: Sequence[str], disable_after_s: float
) -> list[asyncpg.Record]:
    """Disable endpoints that answered 410 or failed continuously for ``disable_after_s``.

    Returns the endpoints disabled by this call (id, tenant, url, disabled_reason, version).
    """
    disabled: list[asyncpg.Record] = []
    if failed:
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
