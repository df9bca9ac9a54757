"""Use cases: initiate (HTTP and Kafka share it), cancel, key recovery and purge.

Initiation is two short transactions (docs/design.md §5): first the idempotency key is
claimed *in flight*, then the transfer row, its ``transfer.created`` outbox row
and the completed key (status + body) commit together. A crash between the two
leaves an in-flight key and no transfer: recovery sees that no effect happened.
A crash after the second leaves a transfer: recovery completes the key from it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from clearway.shared.outbox import Outbox
from clearway.transfer import store
from clearway.transfer.domain import (
    TRANSFERS_ROUTE,
    Actor,
    KeyDecision,
    KeyState,
    Status,
    TransferError,
    TransferRequest,
    check_transition,
    decide,
    fingerprint,
    new_transfer_id,
    reference_for,
)
from clearway.transfer.events import EventFactory

log = logging.getLogger(__name__)


@dataclass
class Core:
    """What the use cases need, wired once by the bootstrap."""

    pool: asyncpg.Pool
    claims: asyncpg.Pool  # synchronous_commit=off: see store.claim_key
    outbox: Outbox
    events: EventFactory
    events_topic: str
    reference_secret: bytes
    lock_timeout_s: float = 30.0
    retention: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class InitiateTransfer:
    tenant: str
    client_id: str
    key: str
    request: TransferRequest
    actor: Actor
    correlation_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict[str, Any]
    replayed: bool


class KeyInFlight(TransferError):
    def __init__(self, retry_after: int) -> None:
        super().__init__("a request with this idempotency key is still in flight")
        self.retry_after = retry_after


class KeyReused(TransferError):
    def __init__(self) -> None:
        super().__init__("the idempotency key was used with a different request")


class TransferNotFound(TransferError):
    pass


async def initiate_transfer(core: Core, cmd: InitiateTransfer) -> Outcome:
    """Create the transfer once per (tenant, client, key); replay it afterwards."""
    fp = fingerprint("POST", TRANSFERS_ROUTE, cmd.request.body())
    ref = reference_for(core.reference_secret, cmd.tenant, cmd.client_id, cmd.key)
    async with core.claims.acquire() as claims:
        seen = await store.claim_key(
            claims, cmd.tenant, cmd.client_id, cmd.key, fp, ref, core.retention
        )
        if seen is not None:
            decision = decide(
                KeyState(seen["state"]),
                seen["fingerprint"],
                fp,
                seen["age_s"],
                core.lock_timeout_s,
            )
            if decision is KeyDecision.REPLAY:
                return Outcome(seen["status_code"], seen["response"], True)
            if decision is KeyDecision.MISMATCH:
                raise KeyReused()
            if decision is KeyDecision.IN_FLIGHT:
                raise KeyInFlight(max(1, math.ceil(core.lock_timeout_s - seen["age_s"])))
            if not await store.take_over(
                claims, cmd.tenant, cmd.client_id, cmd.key, seen["locked_at"]
            ):
                raise KeyInFlight(1)
            log.info("recovering a stale in-flight idempotency key (reference %s)", ref)
    async with core.pool.acquire() as conn:
        try:
            return await _create(conn, core, cmd, fp, ref)
        except KeyReused:
            raise
        except BaseException:
            # No effect committed (or the key is already completed): free the claim so a
            # retry is not stuck behind a lock nobody holds.
            try:
                await store.release_key(conn, cmd.tenant, cmd.client_id, cmd.key)
            except Exception:
                log.warning("could not release an in-flight key; recovery will", exc_info=True)
            raise


async def _create(
    conn: asyncpg.Connection, core: Core, cmd: InitiateTransfer, fp: str, ref: str
) -> Outcome:
    reused = False
    async with conn.transaction():
        row = await store.insert_transfer(
            conn,
            {
                "id": new_transfer_id(),
                "tenant": cmd.tenant,
                "client_id": cmd.client_id,
                "reference": ref,
                "fingerprint": fp,
                **cmd.request.body(),
                "description": cmd.request.description,
                "metadata": dict(cmd.request.metadata),
                "actor": cmd.actor.as_data(),
                "correlation_id": cmd.correlation_id,
            },
        )
        replayed = row is None
        if row is None:
            # The key was purged or its claim recovered: the transfer already exists.
            row = await store.transfer_by_reference(conn, cmd.tenant, ref)
            assert row is not None
            reused = row["fingerprint"] != fp
        else:
            await core.outbox.add(conn, core.events_topic, core.events.created(row))
        if reused:
            await store.release_key(conn, cmd.tenant, cmd.client_id, cmd.key)
        else:
            body = store.transfer_json(row)
            await store.complete_key(conn, cmd.tenant, cmd.client_id, cmd.key, 201, body)
    if reused:
        raise KeyReused()
    return Outcome(201, body, replayed)


async def get_transfer(core: Core, tenant: str, transfer_id: str) -> dict[str, Any]:
    row = await store.transfer_by_id(core.pool, transfer_id, tenant)
    if row is None:
        raise TransferNotFound(transfer_id)
    return store.transfer_json(row)


async def cancel_transfer(core: Core, tenant: str, transfer_id: str, actor: Actor) -> dict:
    """Cancel a pending transfer; canceling a canceled one answers the same again."""
    async with core.pool.acquire() as conn, conn.transaction():
        row = await store.transfer_by_id(conn, transfer_id, tenant, for_update=True)
        if row is None:
            raise TransferNotFound(transfer_id)
        status = Status(row["status"])
        if status is Status.CANCELED:
            return store.transfer_json(row)
        check_transition(status, Status.CANCELED)
        row = await store.move(conn, transfer_id, Status.PENDING, Status.CANCELED)
        assert row is not None
        ev = core.events.for_transfer("transfer.canceled", row, actor=actor.as_data())
        await core.outbox.add(conn, core.events_topic, ev)
        return store.transfer_json(row)


async def recover_stale_keys(core: Core) -> int:
    """Settle in-flight keys older than the lock timeout by looking at the transfers,
    never by re-running anything: a transfer row means the effect happened."""
    recovered = 0
    async with core.pool.acquire() as conn:
        for k in await store.stale_keys(conn, core.lock_timeout_s):
            async with conn.transaction():
                if not await store.take_over(
                    conn, k["tenant"], k["client_id"], k["key"], k["locked_at"]
                ):
                    continue
                row = await store.transfer_by_reference(conn, k["tenant"], k["reference"])
                if row is not None and row["fingerprint"] == k["fingerprint"]:
                    body = store.transfer_json(row)
                    await store.complete_key(conn, k["tenant"], k["client_id"], k["key"], 201, body)
                else:
                    await store.release_key(conn, k["tenant"], k["client_id"], k["key"])
                recovered += 1
    return recovered


async def purge_expired_keys(core: Core) -> int:
    async with core.pool.acquire() as conn:
        return await store.purge_expired_keys(conn)
