"""The console's only SQL: its sessions table (docs/console.md, ADR 0049)."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def ping(conn: asyncpg.Connection) -> bool:
    """The database answers (readiness)."""
    return bool(await conn.fetchval("SELECT 1"))


async def insert_session(
    conn: asyncpg.Connection,
    id_hash: bytes,
    *,
    pending: bool,
    sealed: bytes,
    expires_at: datetime,
    keep: int,
) -> None:
    """A new session; then only the newest ``keep`` of its kind (pending or signed in)
    remain, so a flood of anonymous sign-in starts never evicts a signed-in user."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO sessions (id_hash, pending, sealed, expires_at) VALUES ($1, $2, $3, $4)",
            id_hash,
            pending,
            sealed,
            expires_at,
        )
        await conn.execute(
            "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions"
            " WHERE pending = $1 ORDER BY created_at DESC OFFSET $2)",
            pending,
            keep,
        )


async def get_session(conn: asyncpg.Connection, id_hash: bytes) -> asyncpg.Record | None:
    """The live session of this id hash (expiry enforced here, by the database clock)."""
    return await conn.fetchrow(
        "SELECT pending, sealed, expires_at FROM sessions"
        " WHERE id_hash = $1 AND expires_at > clock_timestamp()",
        id_hash,
    )


async def delete_session(conn: asyncpg.Connection, id_hash: bytes) -> bool:
    return (
        await conn.fetchval("DELETE FROM sessions WHERE id_hash = $1 RETURNING true", id_hash)
        is not None
    )


async def purge_sessions(conn: asyncpg.Connection) -> int:
    """Delete every expired session; returns how many."""
    status = await conn.execute("DELETE FROM sessions WHERE expires_at <= clock_timestamp()")
    return int(status.split()[-1])
