"""SQL of deprecated-version usage (docs/design.md §10): the kit tables
``deprecated_calls`` and ``deprecation_digests`` of a service's schema (kit migration 0006)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import asyncpg


async def add_calls(
    conn: asyncpg.Connection, rows: Sequence[tuple[date, str, str, str, str, int, datetime]]
) -> None:
    """Add ``(week, tenant, client, version, feature, calls, at)`` to the week's counts."""
    await conn.executemany(
        "INSERT INTO deprecated_calls (week, tenant, client_id, version, feature, calls,"
        " last_call_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (week, client_id, version, feature) DO UPDATE"
        " SET calls = deprecated_calls.calls + EXCLUDED.calls,"
        " last_call_at = greatest(deprecated_calls.last_call_at, EXCLUDED.last_call_at)",
        rows,
    )


async def undigested(conn: asyncpg.Connection, *, before: date) -> list[tuple[date, str]]:
    """``(week, client)`` pairs of finished weeks with usage and no digest yet."""
    rows = await conn.fetch(
        "SELECT DISTINCT c.week, c.client_id FROM deprecated_calls c WHERE c.week < $1"
        " AND NOT EXISTS (SELECT 1 FROM deprecation_digests d"
        " WHERE d.week = c.week AND d.client_id = c.client_id) ORDER BY c.week, c.client_id",
        before,
    )
    return [(r["week"], r["client_id"]) for r in rows]


async def claim_week(conn: asyncpg.Connection, week: date, client: str) -> list[Any] | None:
    """Mark the client's week digested and return its usage; None when another
    transaction did first. Runs in the caller's transaction (with the event)."""
    claimed = await conn.fetchval(
        "INSERT INTO deprecation_digests (week, client_id) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        week,
        client,
    )
    if claimed is None:
        return None
    return list(
        await conn.fetch(
            "SELECT tenant, version, feature, calls, last_call_at FROM deprecated_calls"
            " WHERE week = $1 AND client_id = $2 ORDER BY version, feature",
            week,
            client,
        )
    )


async def forget_before(conn: asyncpg.Connection, week: date) -> None:
    """Drop usage and digest marks of weeks before ``week`` (already digested)."""
    await conn.execute("DELETE FROM deprecated_calls WHERE week < $1", week)
    await conn.execute("DELETE FROM deprecation_digests WHERE week < $1", week)
