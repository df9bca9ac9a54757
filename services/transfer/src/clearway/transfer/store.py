"""asyncpg repositories for the ``transfer`` schema."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from clearway.transfer.domain import KeyState, Posting, Status

TRANSFER_COLUMNS = (
    "id, tenant, client_id, reference, fingerprint, amount, currency, source, destination,"
    " description, metadata, status, version, rail_charge_id, failure_reason, actor,"
    " correlation_id, created_at, updated_at"
)


def transfer_json(row: asyncpg.Record) -> dict[str, Any]:
    """The public representation of a transfer (what the API returns)."""
    return {
        "id": row["id"],
        "reference": row["reference"],
        "status": row["status"],
        "amount": row["amount"],
        "currency": row["currency"],
        "source": row["source"],
        "destination": row["destination"],
        "description": row["description"],
        "metadata": row["metadata"] or {},
        "failure_reason": row["failure_reason"],
        "created_at": row["created_at"].isoformat().replace("+00:00", "Z"),
    }


# ------------------------------------------------------------------ idempotency keys


async def claim_key(
    conn: asyncpg.Connection,
    tenant: str,
    client_id: str,
    key: str,
    fingerprint: str,
    reference: str,
    retention: timedelta,
) -> asyncpg.Record | None:
    """Claim the key as in flight; return None when claimed, else the existing row
    (with its age in seconds).

    Reads first, so that a replay writes nothing. ``conn`` may commit
    asynchronously (``synchronous_commit=off``): a claim lost in a crash had no
    effect yet, and the transaction that records the effect flushes the WAL,
    claim included, when it commits.
    """
    for _ in range(2):  # a claim that lost a race is read back in the second round
        seen = await conn.fetchrow(_SEEN, tenant, client_id, key)
        if seen is not None:
            return seen
        claimed = await conn.fetchval(
            "INSERT INTO idempotency_keys (tenant, client_id, key, fingerprint, state, reference,"
            " expires_at) VALUES ($1,$2,$3,$4,$5,$6, now() + $7::interval)"
            " ON CONFLICT DO NOTHING RETURNING true",
            tenant,
            client_id,
            key,
            fingerprint,
            KeyState.IN_FLIGHT.value,
            reference,
            retention,
        )
        if claimed:
            return None
    return await conn.fetchrow(_SEEN, tenant, client_id, key)


_SEEN = (
    "SELECT state, fingerprint, status_code, response, locked_at,"
    " extract(epoch FROM clock_timestamp() - locked_at)::float8 AS age_s"
    " FROM idempotency_keys WHERE tenant=$1 AND client_id=$2 AND key=$3"
)


async def take_over(
    conn: asyncpg.Connection, tenant: str, client_id: str, key: str, locked_at: Any
) -> bool:
    """Compare-and-set the lock of a stale in-flight key; only one recoverer wins."""
    return (
        await conn.fetchval(
            "UPDATE idempotency_keys SET locked_at = clock_timestamp()"
            " WHERE tenant=$1 AND client_id=$2 AND key=$3 AND state=$4 AND locked_at=$5"
            " RETURNING true",
            tenant,
            client_id,
            key,
            KeyState.IN_FLIGHT.value,
            locked_at,
        )
        is not None
    )


async def complete_key(
    conn: asyncpg.Connection,
    tenant: str,
    client_id: str,
    key: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET state=$4, status_code=$5, response=$6"
        " WHERE tenant=$1 AND client_id=$2 AND key=$3",
        tenant,
        client_id,
        key,
        KeyState.COMPLETED.value,
        status_code,
        response,
    )


async def release_key(conn: asyncpg.Connection, tenant: str, client_id: str, key: str) -> None:
    """Forget an in-flight claim that produced no effect (nothing to replay)."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE tenant=$1 AND client_id=$2 AND key=$3 AND state=$4",
        tenant,
        client_id,
        key,
        KeyState.IN_FLIGHT.value,
    )


async def stale_keys(conn: asyncpg.Connection, older_than_s: float, limit: int = 500) -> list:
    return await conn.fetch(
        "SELECT tenant, client_id, key, reference, fingerprint, locked_at FROM idempotency_keys"
        " WHERE state=$1 AND locked_at < clock_timestamp() - make_interval(secs => $2)"
        " LIMIT $3",
        KeyState.IN_FLIGHT.value,
        older_than_s,
        limit,
    )


async def purge_expired_keys(conn: asyncpg.Connection, batch: int = 5000) -> int:
    """Delete expired keys (the transfers' unique reference still blocks a second one)."""
    total = 0
    while True:
        n = await conn.fetchval(
            "WITH gone AS (DELETE FROM idempotency_keys WHERE ctid IN ("
            " SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT $1)"
            " RETURNING 1) SELECT count(*) FROM gone",
            batch,
        )
        total += n
        if n < batch:
            return total


# ------------------------------------------------------------------ transfers


async def insert_transfer(conn: asyncpg.Connection, t: dict[str, Any]) -> asyncpg.Record | None:
    """Insert a pending transfer; None when (tenant, reference) already exists."""
    return await conn.fetchrow(
        "INSERT INTO transfers (id, tenant, client_id, reference, fingerprint, amount, currency,"
        " source, destination, description, metadata, status, actor, correlation_id)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"
        f" ON CONFLICT (tenant, reference) DO NOTHING RETURNING {TRANSFER_COLUMNS}",
        t["id"],
        t["tenant"],
        t["client_id"],
        t["reference"],
        t["fingerprint"],
        t["amount"],
        t["currency"],
        t["source"],
        t["destination"],
        t["description"],
        t["metadata"],
        Status.PENDING.value,
        t["actor"],
        t["correlation_id"],
    )


async def transfer_by_reference(
    conn: asyncpg.Connection | asyncpg.Pool, tenant: str, reference: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE tenant=$1 AND reference=$2",
        tenant,
        reference,
    )


async def transfer_by_id(
    conn: asyncpg.Connection | asyncpg.Pool,
    transfer_id: str,
    tenant: str | None = None,
    *,
    for_update: bool = False,
) -> asyncpg.Record | None:
    sql = f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id=$1"
    args: list[Any] = [transfer_id]
    if tenant is not None:
        sql += " AND tenant=$2"
        args.append(tenant)
    if for_update:
        sql += " FOR UPDATE"
    return await conn.fetchrow(sql, *args)


async def list_transfers(
    pool: asyncpg.Pool, tenant: str, reference: str | None, after: str | None, limit: int
) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE tenant=$1"
        " AND ($2::text IS NULL OR reference=$2) AND ($3::text IS NULL OR id > $3)"
        " ORDER BY id LIMIT $4",
        tenant,
        reference,
        after,
        limit,
    )


async def move(
    conn: asyncpg.Connection,
    transfer_id: str,
    from_status: Status,
    to_status: Status,
    *,
    rail_charge_id: str | None = None,
    failure_reason: str | None = None,
) -> asyncpg.Record | None:
    """Move a transfer between states if it is still in ``from_status``."""
    return await conn.fetchrow(
        "UPDATE transfers SET status=$3, version=version+1, updated_at=now(),"
        " rail_charge_id=coalesce($4, rail_charge_id), failure_reason=coalesce($5, failure_reason)"
        f" WHERE id=$1 AND status=$2 RETURNING {TRANSFER_COLUMNS}",
        transfer_id,
        from_status.value,
        to_status.value,
        rail_charge_id,
        failure_reason,
    )


async def open_transfers(pool: asyncpg.Pool, older_than_s: float, limit: int) -> list[str]:
    rows = await pool.fetch(
        "SELECT id FROM transfers WHERE status IN ('pending', 'submitted')"
        " AND updated_at < now() - make_interval(secs => $1) ORDER BY updated_at LIMIT $2",
        older_than_s,
        limit,
    )
    return [r["id"] for r in rows]


async def post_ledger(conn: asyncpg.Connection, transfer_id: str, legs: Sequence[Posting]) -> None:
    await conn.executemany(
        "INSERT INTO ledger_postings (transfer_id, account, leg, amount, currency)"
        " VALUES ($1,$2,$3,$4,$5) ON CONFLICT (transfer_id, leg) DO NOTHING",
        [(transfer_id, p.account, p.leg, p.amount, p.currency) for p in legs],
    )
