"""SQL of retention rules (docs/design.md §9): the kit table ``retention_rules`` of a
service's schema (kit migration 0005)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg


async def seed(conn: asyncpg.Connection, rules: list[tuple[str, timedelta, str]]) -> None:
    """Insert or refresh the default rules; rows an operator overrode keep their value."""
    await conn.executemany(
        "INSERT INTO retention_rules (record_class, retention, description) VALUES ($1, $2, $3)"
        " ON CONFLICT (record_class) DO UPDATE SET retention = EXCLUDED.retention,"
        " description = EXCLUDED.description, updated_at = now()"
        " WHERE NOT retention_rules.overridden"
        " AND retention_rules.retention <> EXCLUDED.retention",
        rules,
    )


async def rules(conn: asyncpg.Connection) -> list[Any]:
    return list(
        await conn.fetch(
            "SELECT record_class, retention, description, overridden, overridden_by, reason,"
            " purges, last_purge_at, last_purge_count FROM retention_rules ORDER BY record_class"
        )
    )


async def override(
    conn: asyncpg.Connection, record_class: str, retention: timedelta, operator: str, reason: str
) -> bool:
    status: str = await conn.execute(
        "UPDATE retention_rules SET retention = $2, overridden = true, overridden_by = $3,"
        " reason = $4, updated_at = now() WHERE record_class = $1",
        record_class,
        retention,
        operator,
        reason,
    )
    return status.endswith(" 1")


async def retention_of(conn: asyncpg.Connection, record_class: str) -> timedelta | None:
    value: timedelta | None = await conn.fetchval(
        "SELECT retention FROM retention_rules WHERE record_class = $1", record_class
    )
    return value


async def count_purge(conn: asyncpg.Connection, record_class: str, count: int) -> int:
    """Record one purge of ``count`` records; returns its number (the event's version)."""
    value: int = await conn.fetchval(
        "UPDATE retention_rules SET purges = purges + 1, last_purge_at = now(),"
        " last_purge_count = $2 WHERE record_class = $1 RETURNING purges",
        record_class,
        count,
    )
    return value
