"""Cards and the sealed fingerprint key in the ``vault`` schema (the only SQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from clearway.vault.domain import Card

_COLUMNS = (
    "token, tenant, fingerprint, brand, bin, last4, exp_month, exp_year, uses, created_at,"
    " last_used_at"
)


async def ping(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT 1"))


async def fingerprint_key(conn: asyncpg.Connection) -> bytes | None:
    return await conn.fetchval("SELECT sealed FROM fingerprint_keys WHERE id = 'current'")


async def insert_fingerprint_key(conn: asyncpg.Connection, sealed: bytes) -> None:
    """First writer wins; a concurrent replica's key is kept."""
    await conn.execute(
        "INSERT INTO fingerprint_keys (id, sealed) VALUES ('current', $1)"
        " ON CONFLICT (id) DO NOTHING",
        sealed,
    )


async def insert_card(
    conn: asyncpg.Connection, card: Card, sealed: bytes
) -> tuple[asyncpg.Record, bool]:
    """Insert ``card`` unless the tenant already has one with its fingerprint:
    ``(row, created)``; the existing row otherwise."""
    row = await conn.fetchrow(
        "INSERT INTO cards (token, tenant, fingerprint, brand, bin, last4, exp_month, exp_year,"
        " sealed) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
        f" ON CONFLICT (tenant, fingerprint) DO NOTHING RETURNING {_COLUMNS}",
        card.token,
        card.tenant,
        card.fingerprint,
        card.brand,
        card.bin,
        card.last4,
        card.exp_month,
        card.exp_year,
        sealed,
    )
    if row is not None:
        return row, True
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM cards WHERE tenant = $1 AND fingerprint = $2",
        card.tenant,
        card.fingerprint,
    )
    assert row is not None
    return row, False


async def get_card(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, token: str) -> Any:
    """The tenant's card ``token`` (no sealed data), or None."""
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM cards WHERE tenant = $1 AND token = $2", tenant, token
    )


async def use_card(conn: asyncpg.Connection, tenant: str, token: str) -> Any:
    """Count one detokenization and return the row with its sealed data, or None."""
    return await conn.fetchrow(
        "UPDATE cards SET uses = uses + 1, last_used_at = now()"
        f" WHERE tenant = $1 AND token = $2 RETURNING {_COLUMNS}, sealed",
        tenant,
        token,
    )


async def purge_cards(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> int:
    """Record class ``vault_cards`` (docs/design.md §9): at most ``limit`` cards whose
    last use (or, never used, tokenization) is before ``cutoff``, sealed number included."""
    n: int = await conn.fetchval(
        "WITH gone AS (DELETE FROM cards WHERE token IN ("
        " SELECT token FROM cards WHERE coalesce(last_used_at, created_at) < $1 LIMIT $2)"
        " RETURNING 1) SELECT count(*) FROM gone",
        cutoff,
        limit,
    )
    return n
