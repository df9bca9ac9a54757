"""The executor: submits pending transfers to the rail and records the outcome.

Driven by ``transfer.created`` events (queued job over Kafka) and by a sweep of
open transfers at start-up and periodically, so pending work resumes after a
cold start. Every step is safe to repeat: state changes are conditional
updates, the rail deduplicates by reference, ledger legs are unique.
"""

from __future__ import annotations

import asyncio
import logging

from clearway.transfer import store
from clearway.transfer.domain import Status, settlement_postings
from clearway.transfer.handlers import Core
from clearway.transfer.rail_client import RailCharge, RailClient

log = logging.getLogger(__name__)


class Executor:
    def __init__(self, core: Core, rail: RailClient, *, concurrency: int = 16) -> None:
        self.core = core
        self.rail = rail
        self._slots = asyncio.Semaphore(concurrency)

    async def execute(self, transfer_id: str) -> Status | None:
        """Drive one transfer as far as it goes; returns its final status (or None)."""
        async with self._slots:
            row = await self._submit(transfer_id)
            if row is None or Status(row["status"]) is not Status.SUBMITTED:
                return Status(row["status"]) if row else None
            result = await self.rail.charge(
                row["reference"],
                row["amount"],
                row["currency"],
                row["source"],
                row["destination"],
            )
            return await self._finish(transfer_id, result)

    async def execute_many(self, transfer_ids: list[str]) -> None:
        """Run several at once; re-raise the first failure after all have finished."""
        results = await asyncio.gather(
            *(self.execute(t) for t in transfer_ids), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _submit(self, transfer_id: str):
        core = self.core
        async with core.pool.acquire() as conn, conn.transaction():
            row = await store.move(conn, transfer_id, Status.PENDING, Status.SUBMITTED)
            if row is None:
                return await store.transfer_by_id(conn, transfer_id)
            await core.outbox.add(
                conn, core.events_topic, core.events.for_transfer("transfer.submitted", row)
            )
            return row

    async def _finish(self, transfer_id: str, result) -> Status:
        core = self.core
        async with core.pool.acquire() as conn, conn.transaction():
            row = await store.transfer_by_id(conn, transfer_id, for_update=True)
            assert row is not None
            if Status(row["status"]) is not Status.SUBMITTED:
                return Status(row["status"])  # someone else finished it
            if isinstance(result, RailCharge) and result.status == "settled":
                legs = settlement_postings(
                    row["source"], row["destination"], row["amount"], row["currency"]
                )
                await store.post_ledger(conn, transfer_id, legs)
                row = await store.move(
                    conn,
                    transfer_id,
                    Status.SUBMITTED,
                    Status.SETTLED,
                    rail_charge_id=result.charge_id,
                )
                ev = core.events.for_transfer(
                    "transfer.settled", row, rail_charge_id=result.charge_id
                )
            else:
                reason = (
                    f"declined by the rail (charge {result.charge_id})"
                    if isinstance(result, RailCharge)
                    else result.reason
                )
                row = await store.move(
                    conn, transfer_id, Status.SUBMITTED, Status.FAILED, failure_reason=reason
                )
                ev = core.events.for_transfer("transfer.failed", row, reason=reason)
            await core.outbox.add(conn, core.events_topic, ev)
            return Status(row["status"])

    async def sweep(self, older_than_s: float, limit: int = 1000) -> int:
        """Resume open (pending/submitted) transfers nobody touched for a while."""
        ids = await store.open_transfers(self.core.pool, older_than_s, limit)
        if ids:
            log.info("sweep resumes %d open transfer(s)", len(ids))
            await self.execute_many(ids)
        return len(ids)
