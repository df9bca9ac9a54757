"""Per-tenant data keys and crypto-shredding (docs/design.md §9, ADR 0027).

Each tenant of a service has one random 256-bit key, stored in the service's own
``tenant_keys`` table sealed with the service's KEK (a format-2 envelope record, so
KEK rotation re-wraps it like any sealed column). :class:`TenantKeys` holds the
unwrapped keys in memory and is the envelope's :class:`TenantKeySource`: a tenant's
records are then format 3, their batch keys bound to the tenant's key.

Offboarding a tenant (:func:`shred_tenant`, ``clearway-keys <svc> shred-tenant``)
sets its row's ``sealed`` to NULL in one transaction with the audited
``platform.tenant_shredded`` event: from then on no process can derive the batch
keys of that tenant's records, backups of the records included, while every other
tenant is untouched. The row stays as a tombstone that refuses new records of the
tenant (:class:`TenantShredded`). Other replicas drop the keys they hold in memory
on their next :meth:`TenantKeys.refresh` (a Supervisor job). Offboarding a live
tenant offboards its sandbox twin (``<tenant>_test``, docs/design.md §10) with it:
the twin is the same partner in test mode, with keys of its own.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import asyncpg

from clearway.shared.actor import Actor
from clearway.shared.crypto import store_tenant_keys as store
from clearway.shared.crypto.envelope import Context, Envelope
from clearway.shared.crypto.rotation import SealedColumn
from clearway.shared.event_writer import EventWriter
from clearway.shared.mode import sandbox_twin

__all__ = [
    "EVENT",
    "TENANT_KEY_COLUMN",
    "TenantKeyNotLoaded",
    "TenantKeys",
    "TenantShredded",
    "shred_tenant",
]

EVENT = "platform.tenant_shredded"
#: the sealed column of the kit table, re-wrapped with the service's own columns
TENANT_KEY_COLUMN = SealedColumn("tenant_keys", "sealed")


class TenantShredded(Exception):
    """The tenant's data keys were destroyed: nothing of it is sealed or opened again."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(f"tenant {tenant}: data keys destroyed (crypto-shredded)")


class TenantKeyNotLoaded(RuntimeError):
    """A record of a tenant was sealed before :meth:`TenantKeys.ensure` loaded its key."""


def _context(service: str, key_id: str, tenant: str) -> Context:
    # tenant "" keeps the key row itself under the KEK alone (format 2); the row id
    # binds it to its tenant, so a key row copied to another tenant does not open
    return Context(service, "tenant_keys", "sealed", f"{tenant}/{key_id}")


class TenantKeys:
    """The unwrapped tenant keys of one process, loaded on demand from ``pool``.

    Attaches itself to ``envelope``; call :meth:`ensure` for a tenant before sealing
    or opening its records (a dictionary look-up once loaded)."""

    def __init__(self, envelope: Envelope, pool: asyncpg.Pool) -> None:
        self.envelope, self.pool = envelope, pool
        self._service = envelope.provider.name
        self._ids: dict[str, str] = {}  # tenant -> key id
        self._keys: dict[str, bytes] = {}  # key id -> key
        self._shredded: dict[str, str] = {}  # tenant -> key id (or "")
        envelope.tenant_keys = self

    def current(self, tenant: str) -> tuple[str, bytes]:
        """``(key id, key)`` of ``tenant`` for new records (see :class:`TenantKeySource`)."""
        if tenant in self._shredded:
            raise TenantShredded(tenant)
        key_id = self._ids.get(tenant)
        if key_id is None:
            raise TenantKeyNotLoaded(f"tenant {tenant}: call TenantKeys.ensure before sealing")
        return key_id, self._keys[key_id]

    def shredded(self, tenant: str) -> bool:
        """Whether ``tenant``'s keys are known (to this process) to be destroyed."""
        return tenant in self._shredded

    def key(self, key_id: str) -> bytes | None:
        """The tenant key ``key_id`` if loaded and not destroyed."""
        return self._keys.get(key_id)

    def missing(self, key_id: str) -> str:
        """Why ``key_id`` cannot be used (named in :class:`RecordUnreadable`)."""
        if key_id in self._shredded.values():
            return f"tenant key {key_id} was destroyed (tenant crypto-shredded)"
        return f"tenant key {key_id} is not loaded (TenantKeys.ensure the tenant first)"

    async def ensure(self, tenant: str) -> None:
        """Load ``tenant``'s key, creating it on first use (on its own connection, so a
        key never depends on the caller's transaction committing). A shredded tenant
        is remembered: sealing then raises :class:`TenantShredded` and opening its
        records :class:`RecordUnreadable`."""
        if not tenant or tenant in self._ids or tenant in self._shredded:
            return
        async with self.pool.acquire() as conn:
            row = await store.key_of(conn, tenant)
            if row is None:
                key_id = f"tk_{secrets.token_hex(12)}"
                sealed = self.envelope.seal(
                    secrets.token_bytes(32), _context(self._service, key_id, tenant)
                )
                await store.insert_key(conn, key_id, tenant, sealed)
                row = await store.key_of(conn, tenant)
        self._load(row)

    def _load(self, row: Any) -> None:
        tenant, key_id = row["tenant"], row["id"]
        if row["sealed"] is None:
            self.forget(tenant, key_id)
            return
        context = _context(self._service, key_id, tenant)
        self._keys[key_id] = self.envelope.open(bytes(row["sealed"]), context)
        self._ids[tenant] = key_id

    def forget(self, tenant: str, key_id: str = "") -> None:
        """Drop ``tenant``'s key from memory and refuse it from now on."""
        key_id = self._ids.pop(tenant, key_id)
        self._keys.pop(key_id, None)
        self._shredded[tenant] = key_id
        self.envelope.forget_tenant(tenant)

    async def refresh(self) -> None:
        """Drop the keys of tenants shredded elsewhere (another replica, the CLI): the
        periodic job of the service's Supervisor."""
        if not self._ids:
            return
        async with self.pool.acquire() as conn:
            gone = await store.destroyed_since(conn, list(self._ids))
        for tenant in gone:
            self.forget(tenant)


async def shred_tenant(
    conn: asyncpg.Connection,
    service: str,
    events: EventWriter,
    *,
    tenant: str,
    reason: str,
    actor: Actor | None = None,
    keys: TenantKeys | None = None,
) -> int:
    """Destroy ``tenant``'s data keys in ``service``'s schema (``conn``'s search path),
    and those of its sandbox twin (ADR 0037; naming a twin shreds the twin alone), each
    with its audited ``platform.tenant_shredded`` event, in one transaction; returns how
    many keys were destroyed. ``keys`` (this process's) forget them at once."""
    if not tenant.strip():
        raise ValueError("name the tenant to shred")
    if not reason.strip():
        raise ValueError("crypto-shredding a tenant needs a reason")
    now = datetime.now(UTC)
    tenants = list(dict.fromkeys((tenant, sandbox_twin(tenant))))
    total = 0
    async with conn.transaction():
        for each in tenants:
            destroyed = await store.destroy(conn, f"tk_{secrets.token_hex(12)}", each, reason)
            total += destroyed
            await events.emit(
                conn,
                EVENT,
                subject=f"tenant:{each}",
                version=int(now.timestamp() * 1000),
                actor=actor,
                data={
                    "service": service,
                    "tenant": each,
                    "keys_destroyed": destroyed,
                    "reason": reason,
                    "at": now.isoformat().replace("+00:00", "Z"),
                },
            )
    if keys is not None:
        for each in tenants:
            keys.forget(each)
    return total
