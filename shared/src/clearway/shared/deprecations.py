"""Who still calls deprecated versions: per-client usage and the weekly digest.

The HTTP edge counts every call on a deprecated version in
``clearway_deprecated_calls_total`` and notes it in the app's
``DeprecationLog`` (bounded, in memory). A service that wires
``deprecation_jobs`` flushes the log into its kit table ``deprecated_calls``
every minute and, once a week is over, emits one ``client.deprecation_digest``
per client listing what it still uses (docs/design.md §10): the event reaches
the audit trail and, through webhooks, the partner.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from clearway.shared import store_deprecations as store
from clearway.shared.event_writer import EventWriter
from clearway.shared.supervisor import Supervisor

DIGEST_EVENT = "client.deprecation_digest"
#: Distinct (tenant, client, version, feature) keys held between flushes; more are dropped.
MAX_KEYS = 10_000
#: Usage rows are kept this long after their week (the digest reads the last one).
KEEP_WEEKS = 8

log = logging.getLogger(__name__)

Key = tuple[str, str, str, str]


def week_of(day: date) -> date:
    """The Monday (UTC) that starts ``day``'s ISO 8601 week."""
    return day - timedelta(days=day.weekday())


class DeprecationLog:
    """Calls on deprecated versions since the last flush, per tenant, client, version and
    feature (``GET /v1/transfers/{transfer_id}``)."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._calls: Counter[Key] = Counter()
        self._max_keys = max_keys
        self._dropped = 0

    def record(self, tenant: str, client: str, version: str, feature: str) -> None:
        """Note one call; synchronous and cheap (the edge calls it per request)."""
        key = (tenant, client, version, feature)
        if key not in self._calls and len(self._calls) >= self._max_keys:
            self._dropped += 1  # the metric still counts it; only the digest misses it
            return
        self._calls[key] += 1

    def restore(self, calls: dict[Key, int]) -> None:
        """Put back counts a failed flush could not write (counted again next time)."""
        self._calls.update(calls)

    def drain(self) -> dict[Key, int]:
        """The counts so far, leaving the log empty."""
        calls, self._calls = dict(self._calls), Counter()
        if self._dropped:
            log.warning("deprecation log full: %d calls left out of digests", self._dropped)
            self._dropped = 0
        return calls


@dataclass
class DeprecationDigests:
    """Flushes a ``DeprecationLog`` to the service's schema and emits the weekly digests."""

    usage: DeprecationLog
    pool: asyncpg.Pool
    events: EventWriter
    sunsets: Callable[[str], date | None]
    service: str

    async def flush(self) -> None:
        """Add the log's counts to this week's rows (``deprecated_calls``)."""
        calls = self.usage.drain()
        if not calls:
            return
        now = datetime.now(UTC)
        rows = [(week_of(now.date()), *key, n, now) for key, n in calls.items()]
        try:
            async with self.pool.acquire() as conn:
                await store.add_calls(conn, rows)
        except BaseException:
            self.usage.restore(calls)
            raise

    async def send_digests(self, today: date | None = None) -> int:
        """One ``client.deprecation_digest`` per client for each finished week not yet
        digested; returns how many were written. Safe to run on every replica."""
        await self.flush()
        current = week_of(today or datetime.now(UTC).date())
        sent = 0
        async with self.pool.acquire() as conn:
            for week, client in await store.undigested(conn, before=current):
                async with conn.transaction():
                    rows = await store.claim_week(conn, week, client)
                    if rows is None:
                        continue  # another replica sent it
                    await self.events.emit(
                        conn,
                        DIGEST_EVENT,
                        subject=client,
                        aggregate=f"{self.service}:{client}:{week.isoformat()}",
                        version=1,
                        data=self._digest(week, client, rows),
                        tenant=rows[0]["tenant"] or None,
                    )
                    sent += 1
            await store.forget_before(conn, current - timedelta(weeks=KEEP_WEEKS))
        return sent

    def _digest(self, week: date, client: str, rows: list[Any]) -> dict[str, Any]:
        uses = []
        for r in rows:
            sunset = self.sunsets(r["version"])
            uses.append(
                {
                    "version": r["version"],
                    "feature": r["feature"],
                    "calls": r["calls"],
                    "last_call_at": r["last_call_at"].isoformat().replace("+00:00", "Z"),
                    "sunset": sunset.isoformat() if sunset else None,
                }
            )
        return {
            "client_id": client,
            "service": self.service,
            "week_start": week.isoformat(),
            "week_end": (week + timedelta(days=7)).isoformat(),
            "uses": uses,
        }


def deprecation_jobs(tasks: Supervisor, digests: DeprecationDigests) -> None:
    """Supervised jobs: flush usage every minute, look for finished weeks every hour."""
    tasks.every("deprecation-usage-flush", 60, digests.flush)
    tasks.every("deprecation-digest", 3600, digests.send_digests)
