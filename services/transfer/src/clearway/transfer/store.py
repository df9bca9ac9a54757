"""asyncpg repositories for the ``transfer`` schema: the only module here that speaks SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from clearway.shared.actor import Actor
from clearway.shared.mode import TEST_SUFFIX, Mode
from clearway.transfer.domain import KeyState, Posting, Status, Transfer

TRANSFER_COLUMNS = (
    "id, tenant, client_id, reference, fingerprint, amount, currency, source, destination,"
    " description, metadata, status, version, rail_charge_id, failure_reason, actor,"
    " correlation_id, created_at, consent_id"
)
Executor = asyncpg.Connection | asyncpg.Pool


class StaleTransfer(Exception):
    """The row changed since the transfer was loaded (optimistic version check)."""

    def __init__(self, transfer_id: str, version: int) -> None:
        super().__init__(f"transfer {transfer_id} is no longer at version {version}")
        self.transfer_id = transfer_id
        self.version = version


async def ping(pool: asyncpg.Pool) -> bool:
    """Whether the database answers (the readiness check)."""
    return bool(await pool.fetchval("SELECT true"))


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

    One statement (one round trip) both tries the claim and reads the row as it was
    before: a key that exists conflicts, so a replay writes nothing. ``conn`` may
    commit asynchronously (``synchronous_commit=off``): a claim lost in a crash had
    no effect yet, and the transaction that records the effect flushes the WAL, claim
    included, when it commits.
    """
    args = (tenant, client_id, key, fingerprint, KeyState.IN_FLIGHT.value, reference, retention)
    for _ in range(2):
        row = await conn.fetchrow(_CLAIM, *args)
        if row["claimed"]:
            return None
        if row["state"] is not None:
            return row
        # Neither: a concurrent claim committed after this statement's snapshot was
        # taken (the insert waited for it and conflicted): read it in the next round.
    return await conn.fetchrow(_SEEN, tenant, client_id, key)


_SEEN = (
    "SELECT state, fingerprint, status_code, response_bytes, response_version, locked_at,"
    " extract(epoch FROM clock_timestamp() - locked_at)::float8 AS age_s"
    " FROM idempotency_keys WHERE tenant=$1 AND client_id=$2 AND key=$3"
)
# The main query reads the snapshot taken before the insert, so ``seen`` is the row as
# it was (none when the insert claimed it).
_CLAIM = (
    "WITH claim AS (INSERT INTO idempotency_keys (tenant, client_id, key, fingerprint, state,"
    " reference, expires_at) VALUES ($1,$2,$3,$4,$5,$6, now() + $7::interval)"
    " ON CONFLICT DO NOTHING RETURNING true)"
    " SELECT EXISTS (SELECT FROM claim) AS claimed, seen.*"
    f" FROM (SELECT 1) AS one LEFT JOIN ({_SEEN}) AS seen ON true"
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
    content: bytes,
    version: str,
    response: dict[str, Any],
) -> None:
    """Complete the key with the exact bytes answered (``content``, at dated
    ``version``). ``response`` (JSONB) is still written for replicas of the previous
    release during a rolling deploy; migration 0004 says when it goes."""
    await conn.execute(
        "UPDATE idempotency_keys SET state=$4, status_code=$5, response_bytes=$6,"
        " response_version=$7, response=$8 WHERE tenant=$1 AND client_id=$2 AND key=$3",
        tenant,
        client_id,
        key,
        KeyState.COMPLETED.value,
        status_code,
        content,
        version,
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


async def purge_idempotency_keys(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> int:
    """The purge of record class ``idempotency_keys`` (docs/design.md §9): at most
    ``limit`` keys created before ``cutoff`` (the transfers' unique reference still
    blocks a second transfer)."""
    n: int = await conn.fetchval(
        "WITH gone AS (DELETE FROM idempotency_keys WHERE ctid IN ("
        " SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2)"
        " RETURNING 1) SELECT count(*) FROM gone",
        cutoff,
        limit,
    )
    return n


# ------------------------------------------------------------------ transfers


def _transfer(row: asyncpg.Record) -> Transfer:
    return Transfer(
        id=row["id"],
        tenant=row["tenant"],
        client_id=row["client_id"],
        reference=row["reference"],
        fingerprint=row["fingerprint"],
        amount=row["amount"],
        currency=row["currency"],
        source=row["source"],
        destination=row["destination"],
        created_at=row["created_at"],
        description=row["description"],
        metadata=dict(row["metadata"] or {}),
        actor=Actor.from_data(row["actor"]),
        correlation_id=row["correlation_id"],
        status=Status(row["status"]),
        version=row["version"],
        rail_charge_id=row["rail_charge_id"],
        failure_reason=row["failure_reason"],
        consent_id=row["consent_id"],
    )


@dataclass(frozen=True)
class KeyCompletion:
    """The answer that completes an idempotency key of the transfer's tenant."""

    client_id: str
    key: str
    status_code: int
    content: bytes  # the exact bytes answered
    version: str  # the dated version they are at
    response: dict[str, Any]  # JSONB copy for the previous release (see complete_key)


async def insert_transfer(conn: asyncpg.Connection, t: Transfer, done: KeyCompletion) -> bool:
    """Insert a new transfer and complete its idempotency key with ``done``, in one
    statement (one round trip); False, and the key untouched, when (tenant, reference)
    already exists."""
    inserted = await conn.fetchval(
        "WITH t AS (INSERT INTO transfers (id, tenant, client_id, reference, fingerprint,"
        " amount, currency, source, destination, description, metadata, status, version, actor,"
        " correlation_id, created_at, updated_at, consent_id)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$16,$17)"
        " ON CONFLICT (tenant, reference) DO NOTHING RETURNING true),"
        " k AS (UPDATE idempotency_keys SET state=$20, status_code=$21, response_bytes=$22,"
        " response_version=$23, response=$24 WHERE tenant=$2 AND client_id=$18 AND key=$19"
        " AND EXISTS (SELECT FROM t))"
        " SELECT EXISTS (SELECT FROM t)",
        t.id,
        t.tenant,
        t.client_id,
        t.reference,
        t.fingerprint,
        t.amount,
        t.currency,
        t.source,
        t.destination,
        t.description,
        t.metadata,
        t.status.value,
        t.version,
        t.actor.as_data() if t.actor else None,
        t.correlation_id,
        t.created_at,
        t.consent_id,
        done.client_id,
        done.key,
        KeyState.COMPLETED.value,
        done.status_code,
        done.content,
        done.version,
        done.response,
    )
    return bool(inserted)


async def save_transfer(conn: asyncpg.Connection, t: Transfer) -> None:
    """Write the transfer's state if the row still holds the version it was loaded at;
    raise :class:`StaleTransfer` otherwise (someone else changed it meanwhile)."""
    saved = await conn.fetchval(
        "UPDATE transfers SET status=$3, version=$4, rail_charge_id=$5, failure_reason=$6,"
        " updated_at=now() WHERE id=$1 AND version=$2 RETURNING true",
        t.id,
        t.saved_version,
        t.status.value,
        t.version,
        t.rail_charge_id,
        t.failure_reason,
    )
    if not saved:
        raise StaleTransfer(t.id, t.saved_version)


async def transfer_by_reference(conn: Executor, tenant: str, reference: str) -> Transfer | None:
    row = await conn.fetchrow(
        f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE tenant=$1 AND reference=$2",
        tenant,
        reference,
    )
    return _transfer(row) if row else None


async def transfer_by_id(
    conn: Executor,
    transfer_id: str,
    tenant: str | None = None,
    *,
    for_update: bool = False,
) -> Transfer | None:
    """Load a transfer (of ``tenant`` when given); ``for_update`` locks its row until
    the transaction ends, so load → act → save cannot interleave with another writer."""
    sql = f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id=$1"
    args: list[Any] = [transfer_id]
    if tenant is not None:
        sql += " AND tenant=$2"
        args.append(tenant)
    if for_update:
        sql += " FOR UPDATE"
    row = await conn.fetchrow(sql, *args)
    return _transfer(row) if row else None


async def list_transfers(
    conn: Executor, tenant: str, reference: str | None, after: str | None, limit: int
) -> list[Transfer]:
    rows = await conn.fetch(
        f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE tenant=$1"
        " AND ($2::text IS NULL OR reference=$2) AND ($3::text IS NULL OR id > $3)"
        " ORDER BY id LIMIT $4",
        tenant,
        reference,
        after,
        limit,
    )
    return [_transfer(r) for r in rows]


async def open_transfers(pool: asyncpg.Pool, older_than_s: float, limit: int) -> list[str]:
    rows = await pool.fetch(
        "SELECT id FROM transfers WHERE status = ANY($3::text[])"
        " AND updated_at < now() - make_interval(secs => $1) ORDER BY updated_at LIMIT $2",
        older_than_s,
        limit,
        [Status.PENDING.value, Status.SUBMITTED.value],
    )
    return [r["id"] for r in rows]


async def post_ledger(conn: asyncpg.Connection, transfer_id: str, legs: Sequence[Posting]) -> None:
    await conn.executemany(
        "INSERT INTO ledger_postings (transfer_id, account, leg, amount, currency)"
        " VALUES ($1,$2,$3,$4,$5) ON CONFLICT (transfer_id, leg) DO NOTHING",
        [(transfer_id, p.account, p.leg, p.amount, p.currency) for p in legs],
    )


# ------------------------------------------------------------------ reconciliation


async def settled_by_reference(
    conn: Executor, modes: tuple[Mode, ...] = tuple(Mode)
) -> dict[str, dict[str, Any]]:
    """Every settled transfer's id, amount and currency, by reference; only those of
    ``modes`` (a sandbox twin's tenant id ends in ``TEST_SUFFIX``)."""
    sql = "SELECT id, reference, amount, currency FROM transfers WHERE status = $1"
    args: list[Any] = [Status.SETTLED.value]
    if set(modes) != set(Mode):
        negate = "" if Mode.TEST in modes else "NOT "
        sql += f" AND tenant {negate}LIKE $2"
        args.append("%" + TEST_SUFFIX.replace("_", "\\_"))
    rows = await conn.fetch(sql, *args)
    return {r["reference"]: dict(r) for r in rows}


async def record_reconciliation(
    conn: asyncpg.Connection,
    run_id: str,
    counts: dict[str, int],
    breaks: Sequence[dict[str, Any]],
) -> None:
    """Store one reconciliation run and its breaks."""
    await conn.execute(
        "INSERT INTO reconciliation_runs (id, matched, missing_at_rail, unexpected_at_rail,"
        " mismatched) VALUES ($1,$2,$3,$4,$5)",
        run_id,
        counts["matched"],
        counts["missing_at_rail"],
        counts["unexpected_at_rail"],
        counts["mismatched"],
    )
    await conn.executemany(
        "INSERT INTO reconciliation_items (run_id, reference, kind, detail) VALUES ($1,$2,$3,$4)",
        [(run_id, b["reference"], b["kind"], b["detail"]) for b in breaks],
    )
