"""SQL of the sign-in rate limits (``sign_in_limits``): fixed-window counters."""

from __future__ import annotations

import asyncpg


async def count_attempt(conn: asyncpg.Connection, key: bytes, window_s: float) -> tuple[int, float]:
    """Count one attempt under ``key`` in its current window (a new window once the
    last one is over): the attempts in the window, and the seconds until it ends.
    One statement, so concurrent attempts from several processes count exactly."""
    row = await conn.fetchrow(
        "INSERT INTO sign_in_limits AS l (key, window_start, attempts)"
        " VALUES ($1, clock_timestamp(), 1)"
        " ON CONFLICT (key) DO UPDATE SET"
        "  window_start = CASE WHEN l.window_start"
        "   <= clock_timestamp() - make_interval(secs => $2)"
        "   THEN clock_timestamp() ELSE l.window_start END,"
        "  attempts = CASE WHEN l.window_start <= clock_timestamp() - make_interval(secs => $2)"
        "   THEN 1 ELSE l.attempts + 1 END"
        " RETURNING attempts, extract(epoch FROM"
        "  l.window_start + make_interval(secs => $2) - clock_timestamp())::float8 AS left_s",
        key,
        float(window_s),
    )
    return int(row["attempts"]), float(row["left_s"])


async def clear(conn: asyncpg.Connection, key: bytes) -> None:
    await conn.execute("DELETE FROM sign_in_limits WHERE key = $1", key)


async def purge(conn: asyncpg.Connection, window_s: float) -> int:
    """Delete the counters whose window is over; returns how many."""
    status = await conn.execute(
        "DELETE FROM sign_in_limits WHERE window_start <= clock_timestamp()"
        " - make_interval(secs => $1)",
        float(window_s),
    )
    return int(status.split()[-1])
