"""Retention as data (docs/design.md §9, ADR 0027): one rule per record class, kept in
each service's own ``retention_rules`` table, enforced by the service's purge job and
recorded in the audit trail.

The kit names every record class once (:data:`CATALOGUE`) with its default period. A
service passes :class:`Retention` the classes it owns, each with a *purge*: a store
function deleting at most ``limit`` records older than ``cutoff`` and returning how
many it deleted. At start :meth:`Retention.seed` writes the defaults (the catalogue's,
or the service's own, e.g. ``CLEARWAY_TRANSFER_KEY_RETENTION``) into the table,
leaving rows an operator overrode (``clearway-retention <svc> set``); the Supervisor
job runs :meth:`Retention.purge`, which reads each rule, deletes in batches (at most
``max_batches`` of ``batch`` per class and run, so a backlog drains over several
runs without one long transaction) and writes each batch's deletion and its
``platform.records_purged`` event (class, count, cutoff) in one transaction: what
was removed is in the audit trail exactly when it was removed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from clearway.shared import store_retention as store
from clearway.shared.event_writer import EventWriter

__all__ = ["CATALOGUE", "EVENT", "Purge", "RecordClass", "Retention"]

EVENT = "platform.records_purged"

#: deletes at most ``limit`` records older than ``cutoff``; returns how many it deleted
Purge = Callable[[asyncpg.Connection, datetime, int], Awaitable[int]]


@dataclass(frozen=True)
class RecordClass:
    """A class of records with one retention rule."""

    name: str
    default: timedelta
    description: str


CATALOGUE: dict[str, RecordClass] = {
    c.name: c
    for c in (
        RecordClass(
            "idempotency_keys",
            timedelta(days=7),
            "transfer: idempotency keys, from their creation (a replay after it is"
            " still refused by the transfer's unique reference)",
        ),
        RecordClass(
            "webhook_attempts",
            timedelta(days=30),
            "webhooks: delivery attempts (outcome, status, latency, response excerpt)",
        ),
        RecordClass(
            "webhook_dead_letters",
            timedelta(days=90),
            "webhooks: dead-lettered deliveries, from when they were dead-lettered",
        ),
        RecordClass(
            "webhook_message_payloads",
            timedelta(days=90),
            "webhooks: payloads of messages no longer pending, from their last delivery"
            " activity (delivered, dead-lettered, skipped or re-queued); the message row"
            " stays, and a message without its payload cannot be re-delivered",
        ),
        RecordClass(
            "consent_evidence",
            timedelta(days=395),
            "consent: the sealed evidence of an approval (what the user was shown, user"
            " agent) of a consent that ended (consumed, rejected, revoked, expired), from"
            " its end; the audit trail keeps its SHA-256",
        ),
        RecordClass(
            "consents",
            timedelta(days=730),
            "consent: consents that ended, from their end, with all their sealed"
            " personal data; active consents are never purged",
        ),
        RecordClass(
            "vault_cards",
            timedelta(days=395),
            "vault: cards (sealed number and holder), from their last use or, never"
            " used, their tokenization",
        ),
    )
}


class Retention:
    """The retention rules and purges of one service (see the module docstring)."""

    def __init__(
        self,
        service: str,
        events: EventWriter,
        purges: Mapping[str, Purge],
        *,
        defaults: Mapping[str, timedelta] | None = None,
        batch: int = 1000,
        max_batches: int = 20,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        unknown = set(purges) - set(CATALOGUE)
        if unknown:
            raise ValueError(f"record classes not in the kit catalogue: {sorted(unknown)}")
        self.service, self.events, self.purges = service, events, dict(purges)
        self.defaults = {n: (defaults or {}).get(n, CATALOGUE[n].default) for n in purges}
        self.batch, self.max_batches, self._clock = batch, max_batches, clock

    async def seed(self, conn: asyncpg.Connection) -> None:
        """Write the default rules of the service's classes (overridden rows stay)."""
        await store.seed(
            conn, [(n, d, CATALOGUE[n].description) for n, d in self.defaults.items()]
        )

    async def purge(self, pool: asyncpg.Pool) -> dict[str, int]:
        """One run of the purge job: records removed per class."""
        removed: dict[str, int] = {}
        for name, purge in self.purges.items():
            async with pool.acquire() as conn:
                retention = await store.retention_of(conn, name)
                if retention is None:  # not seeded yet (a replica older than the rule)
                    continue
                cutoff = self._clock() - retention
                removed[name] = 0
                for _ in range(self.max_batches):
                    async with conn.transaction():
                        n = await purge(conn, cutoff, self.batch)
                        if n:
                            await self._record(conn, name, n, cutoff, retention)
                    removed[name] += n
                    if n < self.batch:
                        break
        return removed

    async def _record(
        self, conn: asyncpg.Connection, name: str, count: int, cutoff: datetime, kept: timedelta
    ) -> None:
        number = await store.count_purge(conn, name, count)
        await self.events.emit(
            conn,
            EVENT,
            subject=f"retention:{self.service}:{name}",
            version=number,
            data={
                "service": self.service,
                "record_class": name,
                "count": count,
                "cutoff": _rfc3339(cutoff),
                "retention_days": kept / timedelta(days=1),
                "at": _rfc3339(self._clock()),
            },
        )


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
