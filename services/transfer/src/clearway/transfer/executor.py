"""The executor: submits pending transfers to the rail and records the outcome.

Driven by ``transfer.created`` events (queued job over Kafka) and by a sweep of
open transfers at start-up and periodically, so pending work resumes after a
cold start. Every step is safe to repeat: each state change loads the
``Transfer``, lets the aggregate check the move and saves it (handlers), the
rail deduplicates by reference, ledger legs are unique.
"""

from __future__ import annotations

import asyncio
import logging

from clearway.transfer import handlers
from clearway.transfer.domain import Status, Transfer
from clearway.transfer.handlers import Core
from clearway.transfer.rail_client import RailCharge, RailRejected, Rails
from clearway.transfer.vault_client import Card, UnknownCardToken, VaultUnavailable, is_card_token

log = logging.getLogger(__name__)


class Executor:
    def __init__(self, core: Core, rails: Rails, *, concurrency: int = 16) -> None:
        self.core = core
        self.rails = rails
        self._slots = asyncio.Semaphore(concurrency)

    async def execute(self, transfer_id: str) -> Status | None:
        """Drive one transfer as far as it goes; returns its final status (or None)."""
        async with self._slots:
            try:
                transfer = await handlers.submit_transfer(self.core, transfer_id)
            except handlers.TransferNotFound:
                return None
            if transfer.status is not Status.SUBMITTED:
                return transfer.status
            card: Card | None = None
            if is_card_token(transfer.source):
                try:
                    card = await self._card(transfer)
                except UnknownCardToken:
                    failed = await handlers.fail_transfer(
                        self.core, transfer_id, "the card token is unknown at the vault"
                    )
                    return failed.status
            # the same path in both modes but for the rail (docs/design.md §10)
            rail = self.rails.for_tenant(transfer.tenant)
            result = await rail.charge(
                transfer.reference,
                transfer.amount,
                transfer.currency,
                transfer.source,
                transfer.destination,
                card=card,
            )
            return (await self._record(transfer_id, result)).status

    async def _card(self, transfer: Transfer) -> Card:
        """The card behind the transfer's token, for this submission only (the vault
        audits the use under the transfer's reference; docs/design.md §9)."""
        if self.core.vault is None:
            raise VaultUnavailable("no vault configured to detokenize card tokens")
        return await self.core.vault.detokenize(
            transfer.tenant, transfer.source, transfer.reference
        )

    async def _record(self, transfer_id: str, result: RailCharge | RailRejected) -> Transfer:
        if isinstance(result, RailCharge) and result.status == "settled":
            return await handlers.settle_transfer(self.core, transfer_id, result.charge_id)
        reason = (
            f"declined by the rail (charge {result.charge_id})"
            if isinstance(result, RailCharge)
            else result.reason
        )
        return await handlers.fail_transfer(self.core, transfer_id, reason)

    async def execute_many(self, transfer_ids: list[str]) -> None:
        """Run several at once; re-raise the first failure after all have finished."""
        results = await asyncio.gather(
            *(self.execute(t) for t in transfer_ids), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def sweep(self, older_than_s: float, limit: int = 1000) -> int:
        """Resume open (pending/submitted) transfers nobody touched for a while."""
        ids = await handlers.open_transfers(self.core, older_than_s, limit)
        if ids:
            log.info("sweep resumes %d open transfer(s)", len(ids))
            await self.execute_many(ids)
        return len(ids)
