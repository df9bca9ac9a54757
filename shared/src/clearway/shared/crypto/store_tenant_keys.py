"""SQL of the per-tenant key level (docs/design.md §9, ADR 0027): the ``tenant_keys``
table of a service's schema (kit migration 0004)."""

from __future__ import annotations

from typing import Any

import asyncpg


async def key_of(conn: asyncpg.Connection, tenant: str) -> Any:
    return await conn.fetchrow(
        "SELECT id, tenant, sealed, destroyed_at FROM tenant_keys WHERE tenant = $1", tenant
    )


async def insert_key(conn: asyncpg.Connection, key_id: str, tenant: str, sealed: bytes) -> None:
    """A new tenant key unless another replica made one first (then theirs is used)."""
    await conn.execute(
        "INSERT INTO tenant_keys (id, tenant, sealed) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant) DO NOTHING",
        key_id,
        tenant,
        sealed,
    )


async def destroy(conn: asyncpg.Connection, key_id: str, tenant: str, reason: str) -> int:
    """Destroy ``tenant``'s key, or record a tombstone when it never had one (both refuse
    new records of the tenant); returns how many keys were destroyed. Call inside a
    transaction."""
    had: bool | None = await conn.fetchval(
        "SELECT sealed IS NOT NULL FROM tenant_keys WHERE tenant = $1 FOR UPDATE", tenant
    )
    await conn.execute(
        "INSERT INTO tenant_keys (id, tenant, sealed, destroyed_at, reason)"
        " VALUES ($1, $2, NULL, now(), $3)"
        " ON CONFLICT (tenant) DO UPDATE SET sealed = NULL, reason = EXCLUDED.reason,"
        " destroyed_at = coalesce(tenant_keys.destroyed_at, now())",
        key_id,
        tenant,
        reason,
    )
    return 1 if had else 0


async def destroyed_since(conn: asyncpg.Connection, tenants: list[str]) -> list[str]:
    """Which of ``tenants`` have been shredded (by any replica or the CLI)."""
    rows = await conn.fetch(
        "SELECT tenant FROM tenant_keys WHERE tenant = ANY($1) AND sealed IS NULL", tenants
    )
    return [r["tenant"] for r in rows]
