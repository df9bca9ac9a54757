"""Repositories over the ``webhooks`` schema: endpoints, secrets, the delivery log.

Every read and write of tenant data takes the tenant, so one tenant's query can
never return another tenant's rows. The dispatcher's claim/record SQL lives in
:mod:`clearway.webhooks.store_dispatch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

ENDPOINT_COLUMNS = (
    "id, tenant, url, description, event_types, rate_limit_per_s, disabled, disabled_reason,"
    " failing_since, created_at, updated_at, version, ed25519_signatures, consecutive_failures,"
    " api_version"
)
MESSAGE_COLUMNS = (
    "id, endpoint_id, event_id, event_type, correlation_id, status, attempts, next_attempt_at,"
    " last_status_code, delivered_at, created_at, updated_at, queued_by, version,"
    " payload_purged_at"
)
UPDATABLE = frozenset({"url", "description", "event_types", "rate_limit_per_s", "api_version"})


async def insert_endpoint(
    conn: asyncpg.Connection,
    *,
    id: str,
    tenant: str,
    url: str,
    description: str,
    event_types: Sequence[str],
    rate_limit_per_s: float | None,
    api_version: str,
    ed25519_signatures: bool = False,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO endpoints (id, tenant, url, description, event_types, rate_limit_per_s,"
        " ed25519_signatures, api_version)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {ENDPOINT_COLUMNS}",
        id,
        tenant,
        url,
        description,
        list(event_types),
        rate_limit_per_s,
        ed25519_signatures,
        api_version,
    )
    assert row is not None
    return row


async def insert_secret(conn: asyncpg.Connection, endpoint_id: str, sealed: bytes) -> None:
    """A sealed ``whsec_`` secret (v1)."""
    await conn.execute(
        "INSERT INTO endpoint_secrets (endpoint_id, sealed) VALUES ($1, $2)",
        endpoint_id,
        sealed,
    )


async def expire_secrets(conn: asyncpg.Connection, endpoint_id: str, grace_s: float) -> datetime:
    """Let the endpoint's current secrets sign for ``grace_s`` more seconds."""
    until: datetime = await conn.fetchval("SELECT now() + make_interval(secs => $1)", grace_s)
    await conn.execute(
        "UPDATE endpoint_secrets SET expires_at = LEAST(coalesce(expires_at, 'infinity'), $2)"
        " WHERE endpoint_id = $1 AND (expires_at IS NULL OR expires_at > now())",
        endpoint_id,
        until,
    )
    return until


async def active_secrets(
    conn: asyncpg.Connection, endpoint_ids: Sequence[str]
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT s.id, s.endpoint_id, e.tenant, s.sealed FROM endpoint_secrets s"
        " JOIN endpoints e ON e.id = s.endpoint_id"
        " WHERE s.endpoint_id = ANY($1::text[]) AND (s.expires_at IS NULL OR s.expires_at > now())"
        " ORDER BY s.id",
        list(endpoint_ids),
    )


async def lock_tenant_endpoints(conn: asyncpg.Connection, tenant: str) -> list[str]:
    """The ids of a tenant's live endpoints, locked for the caller's transaction."""
    rows = await conn.fetch(
        "SELECT id FROM endpoints WHERE tenant = $1 AND deleted_at IS NULL ORDER BY id FOR UPDATE",
        tenant,
    )
    return [r["id"] for r in rows]


async def get_endpoint(
    conn: asyncpg.Connection, tenant: str, endpoint_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE tenant = $1 AND id = $2"
        " AND deleted_at IS NULL" + (" FOR UPDATE" if lock else ""),
        tenant,
        endpoint_id,
    )


async def list_endpoints(
    conn: asyncpg.Connection,
    tenant: str,
    *,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[asyncpg.Record]:
    """A tenant's live endpoints in ``(created_at, id)`` order, after a keyset position."""
    at, last_id = after if after is not None else (None, None)
    return await conn.fetch(
        f"SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE tenant = $1 AND deleted_at IS NULL"
        " AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))"
        " ORDER BY created_at, id LIMIT $4",
        tenant,
        at,
        last_id,
        limit,
    )


async def update_endpoint(
    conn: asyncpg.Connection, tenant: str, endpoint_id: str, changes: dict[str, Any]
) -> asyncpg.Record | None:
    sets = ["updated_at = now()", "version = version + 1"]
    args: list[Any] = [tenant, endpoint_id]
    for name, value in changes.items():
        if name not in UPDATABLE:
            raise ValueError(f"not updatable: {name}")
        args.append(list(value) if name == "event_types" else value)
        sets.append(f"{name} = ${len(args)}")
    return await conn.fetchrow(
        f"UPDATE endpoints SET {', '.join(sets)} WHERE tenant = $1 AND id = $2"
        f" AND deleted_at IS NULL RETURNING {ENDPOINT_COLUMNS}",
        *args,
    )


async def set_disabled(
    conn: asyncpg.Connection, tenant: str, endpoint_id: str, disabled: bool, reason: str | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE endpoints SET disabled = $3, disabled_reason = $4, failing_since = NULL,"
        " next_allowed_at = 'epoch', updated_at = now(), version = version + 1"
        " WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL"
        f" RETURNING {ENDPOINT_COLUMNS}",
        tenant,
        endpoint_id,
        disabled,
        reason,
    )


async def delete_endpoint(conn: asyncpg.Connection, tenant: str, endpoint_id: str) -> int | None:
    """Soft delete: the delivery log keeps the endpoint's messages; pending ones are skipped.

    Returns the endpoint's new version, ``None`` when there was no such endpoint.
    """
    version: int | None = await conn.fetchval(
        "UPDATE endpoints SET deleted_at = now(), disabled = true, disabled_reason = 'deleted',"
        " version = version + 1"
        " WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL RETURNING version",
        tenant,
        endpoint_id,
    )
    return version


async def touch_endpoint(conn: asyncpg.Connection, endpoint_id: str) -> int:
    """Record a change made beside the row (a secret rotation); returns the new version."""
    version: int = await conn.fetchval(
        "UPDATE endpoints SET version = version + 1, updated_at = now() WHERE id = $1"
        " RETURNING version",
        endpoint_id,
    )
    return version


async def subscribers(conn: asyncpg.Connection, tenants: Sequence[str]) -> list[asyncpg.Record]:
    """Every live endpoint of ``tenants`` (disabled ones too: their events are stored skipped)."""
    return await conn.fetch(
        "SELECT id, tenant, event_types, disabled, api_version FROM endpoints"
        " WHERE tenant = ANY($1::text[]) AND deleted_at IS NULL",
        list(tenants),
    )


async def insert_messages(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert (id, tenant, endpoint_id, event_id, event_type, correlation_id, traceparent,
    payload, status) rows; a message that exists already is left alone."""
    if not rows:
        return 0
    cols = list(zip(*rows, strict=True))
    result = await conn.execute(
        "INSERT INTO messages (id, tenant, endpoint_id, event_id, event_type, correlation_id,"
        " traceparent, payload, status, next_attempt_at)"
        " SELECT u.*, CASE WHEN u.status = 'pending' THEN now() END FROM unnest("
        "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
        " $8::bytea[], $9::text[]) AS u(id, tenant, endpoint_id, event_id, event_type,"
        " correlation_id, traceparent, payload, status)"
        " ON CONFLICT (endpoint_id, event_id) DO NOTHING",
        *[list(c) for c in cols],
    )
    return int(result.split()[-1])


async def list_messages(
    conn: asyncpg.Connection,
    tenant: str,
    *,
    endpoint_id: str | None = None,
    event_id: str | None = None,
    correlation_id: str | None = None,
    status: str | None = None,
    event_type: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    newest_first: bool | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[asyncpg.Record]:
    """A tenant's messages in ``(created_at, id)`` order (``newest_first``: reversed),
    after a keyset position; ``created_after`` inclusive, ``created_before`` exclusive."""
    where = ["tenant = $1"]
    args: list[Any] = [tenant]
    for column, value in (
        ("endpoint_id", endpoint_id),
        ("event_id", event_id),
        ("correlation_id", correlation_id),
        ("status", status),
        ("event_type", event_type),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    for op, bound in ((">=", created_after), ("<", created_before)):
        if bound is not None:
            args.append(bound)
            where.append(f"created_at {op} ${len(args)}")
    if after is not None:
        args += [after[0], after[1]]
        cmp = "<" if newest_first else ">"
        where.append(f"(created_at, id) {cmp} (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    order = "created_at DESC, id DESC" if newest_first else "created_at, id"
    return await conn.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(where)}"
        f" ORDER BY {order} LIMIT ${len(args)}",
        *args,
    )


async def get_message(
    conn: asyncpg.Connection, tenant: str, msg_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant = $1 AND id = $2"
        + (" FOR UPDATE" if lock else ""),
        tenant,
        msg_id,
    )


async def list_attempts(
    conn: asyncpg.Connection, msg_id: str, *, after: tuple[int, int] | None = None, limit: int = 50
) -> list[asyncpg.Record]:
    """A message's attempts in ``(attempt_no, id)`` order, after a keyset position."""
    no, last_id = after if after is not None else (None, None)
    return await conn.fetch(
        "SELECT id, attempt_no, trigger, outcome, response_code, latency_ms, response_body, error,"
        " attempted_at FROM attempts WHERE message_id = $1"
        " AND ($2::int IS NULL OR (attempt_no, id) > ($2, $3)) ORDER BY attempt_no, id LIMIT $4",
        msg_id,
        no,
        last_id,
        limit,
    )


async def requeue(conn: asyncpg.Connection, msg_ids: Sequence[str], queued_by: str) -> int:
    """Give messages a fresh round of attempts, starting now (not those whose payload
    was purged: there is nothing left to deliver)."""
    result = await conn.execute(
        "UPDATE messages SET status = 'pending', round_attempts = 0, next_attempt_at = now(),"
        " queued_by = $2, updated_at = now(), version = version + 1"
        " WHERE id = ANY($1::text[]) AND payload IS NOT NULL",
        list(msg_ids),
        queued_by,
    )
    await conn.execute("SELECT pg_notify('clearway_webhooks_due', '')")
    return int(result.split()[-1])


# ------------------------------------------------------------------ retention


async def purge_attempts(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> int:
    """Record class ``webhook_attempts`` (docs/design.md §9): at most ``limit`` attempts
    made before ``cutoff`` (the message keeps its attempt counter)."""
    n: int = await conn.fetchval(
        "WITH gone AS (DELETE FROM attempts WHERE id IN ("
        " SELECT id FROM attempts WHERE attempted_at < $1 ORDER BY id LIMIT $2)"
        " RETURNING 1) SELECT count(*) FROM gone",
        cutoff,
        limit,
    )
    return n


async def purge_dead_letters(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> int:
    """Record class ``webhook_dead_letters``: at most ``limit`` dead letters written
    before ``cutoff``."""
    n: int = await conn.fetchval(
        "WITH gone AS (DELETE FROM dead_letters WHERE id IN ("
        " SELECT id FROM dead_letters WHERE created_at < $1 ORDER BY id LIMIT $2)"
        " RETURNING 1) SELECT count(*) FROM gone",
        cutoff,
        limit,
    )
    return n


async def purge_payloads(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> int:
    """Record class ``webhook_message_payloads``: the payloads of at most ``limit``
    messages that are not pending and saw no delivery activity since ``cutoff``. The
    row stays (the log, attempts and dead letters); a pending message keeps its payload
    whatever its age, and one re-queued starts its period again."""
    result = await conn.execute(
        "UPDATE messages SET payload = NULL, payload_purged_at = now() WHERE id IN ("
        " SELECT id FROM messages WHERE payload IS NOT NULL AND status <> 'pending'"
        " AND updated_at < $1 ORDER BY updated_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)",
        cutoff,
        limit,
    )
    return int(result.split()[-1])
