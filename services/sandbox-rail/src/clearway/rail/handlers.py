"""The rail's use cases; the API calls these and only these touch the store."""

from __future__ import annotations

from typing import Any

import asyncpg

from clearway.rail import store
from clearway.rail.domain import CardUsed, new_charge


async def create_charge(
    pool: asyncpg.Pool,
    reference: str,
    amount: int,
    currency: str,
    source: str,
    destination: str,
    card: CardUsed | None = None,
) -> tuple[dict[str, Any], bool]:
    """Charge once per reference: ``(charge, created)``; a repeat returns the first charge.
    Raises ``InvalidCharge`` for a charge the domain refuses."""
    charge = new_charge(reference, amount, currency, source, destination, card)
    return await store.create_or_get(pool, charge)


async def get_charge(pool: asyncpg.Pool, reference: str) -> dict[str, Any] | None:
    """The charge with this reference, or None."""
    return await store.get(pool, reference)


async def forget_charge(pool: asyncpg.Pool, reference: str) -> bool:
    """Sandbox tool: drop a charge (reconciliation then finds it missing); False if unknown."""
    return await store.forget(pool, reference)


async def settlement_report(pool: asyncpg.Pool, after: str | None, limit: int) -> list[dict]:
    """Settled charges ordered by reference, after ``after``."""
    return await store.settlement_report(pool, after, limit)
