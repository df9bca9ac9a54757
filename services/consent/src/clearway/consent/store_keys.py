"""Repository of the token signing keys' schedule (the private keys live in the HSM)
and of the sealed session key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


async def signing_keys(conn: asyncpg.Connection) -> list[Any]:
    """Every key, oldest activation first."""
    return list(
        await conn.fetch(
            "SELECT kid, alg, version, public_jwk, activates_at, retired_at, publish_until"
            " FROM signing_keys ORDER BY activates_at, created_at"
        )
    )


async def lock_rotation(conn: asyncpg.Connection) -> None:
    """One rotation at a time across replicas (transaction-scoped advisory lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('consent:keys'))")


async def newest_live_activation(conn: asyncpg.Connection) -> datetime | None:
    """Activation of the newest live key that can sign (sealed keys of before cannot)."""
    value: datetime | None = await conn.fetchval(
        "SELECT max(activates_at) FROM signing_keys"
        " WHERE retired_at IS NULL AND version IS NOT NULL"
    )
    return value


async def unadopted_version(conn: asyncpg.Connection, record: str) -> int | None:
    """The newest HSM version recorded for this schema (``kek_versions``, e.g. by
    ``clearway-keys consent rotate``) that no key row uses and that is newer than all."""
    value: int | None = await conn.fetchval(
        "SELECT max(version) FROM kek_versions WHERE kek = $1 AND destroyed_at IS NULL"
        " AND version > (SELECT coalesce(max(version), 0) FROM signing_keys)",
        record,
    )
    return value


async def versions_published_until(conn: asyncpg.Connection, now: datetime) -> list[int]:
    """HSM versions of keys whose last token expired (no longer published)."""
    rows = await conn.fetch(
        "SELECT version FROM signing_keys WHERE version IS NOT NULL AND publish_until <= $1",
        now,
    )
    return [r["version"] for r in rows]


async def retire_live_keys(
    conn: asyncpg.Connection, retired_at: datetime, publish_until: datetime
) -> None:
    await conn.execute(
        "UPDATE signing_keys SET retired_at = $1, publish_until = $2 WHERE retired_at IS NULL",
        retired_at,
        publish_until,
    )


async def insert_key(
    conn: asyncpg.Connection,
    kid: str,
    alg: str,
    public_jwk: dict[str, Any],
    version: int,
    activates_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO signing_keys (kid, alg, public_jwk, version, activates_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        kid,
        alg,
        public_jwk,
        version,
        activates_at,
    )


async def session_key(conn: asyncpg.Connection) -> bytes | None:
    """The sealed session/CSRF key, when one was generated."""
    value = await conn.fetchval("SELECT sealed FROM session_keys WHERE id = 'session'")
    return None if value is None else bytes(value)


async def insert_session_key(conn: asyncpg.Connection, sealed: bytes) -> None:
    """Store the sealed session key unless another replica stored one first."""
    await conn.execute(
        "INSERT INTO session_keys (id, sealed) VALUES ('session', $1) ON CONFLICT DO NOTHING",
        sealed,
    )
