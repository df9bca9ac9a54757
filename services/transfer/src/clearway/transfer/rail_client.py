"""The executor's client for the payment rail.

An ambiguous outcome (timeout, reset connection, a 5xx) may or may not have
charged; before any retry the rail is asked about the reference, and only a
"no such charge" leads to sending the charge again. The reference is the
rail's idempotency key, so even a retry that races a lost charge cannot
charge twice.

Every call carries a short-lived service token (``auth``, a
:class:`~clearway.shared.auth.client_credentials.ServiceTokenSource`). A 401 or
403 the token source could not cure is a configuration problem of ours, not a
refusal of the transfer: the job is retried later like an unreachable rail.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry import propagate

from clearway.shared.auth.client_credentials import ServiceTokenSource
from clearway.shared.backoff import parse_retry_after
from clearway.shared.context import current_correlation_id
from clearway.shared.mode import Mode, mode_of
from clearway.transfer.domain import RAIL_RETRY
from clearway.transfer.vault_client import Card

log = logging.getLogger(__name__)


class RailUnavailable(ConnectionError):
    """The rail could not be reached for long enough; the job is retried later.

    A ``ConnectionError`` so that the kit's consumer treats it as infrastructure
    trouble (retried with backoff, never dead-lettered)."""


@dataclass(frozen=True)
class RailCharge:
    charge_id: str
    status: str  # settled | declined
    amount: int
    currency: str


@dataclass(frozen=True)
class RailRejected:
    """The rail refused the request itself (4xx): the transfer fails."""

    reason: str


class RailClient:
    def __init__(
        self, base_url: str, *, auth: ServiceTokenSource | None = None, timeout_s: float = 5.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            auth=auth,
        )

    async def close(self) -> None:
        await self._http.aclose()
        if self._auth is not None:
            await self._auth.aclose()

    async def charge(
        self,
        reference: str,
        amount: int,
        currency: str,
        source: str,
        destination: str,
        card: Card | None = None,
    ) -> RailCharge | RailRejected:
        """Charge once under ``reference``; a card charge (``source`` a card token) also
        sends the detokenized ``card``, which exists only in this request's body."""
        payload: dict[str, Any] = {
            "reference": reference,
            "amount": amount,
            "currency": currency,
            "source": source,
            "destination": destination,
        }
        if card is not None:
            payload["card"] = {
                "number": card.number,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "brand": card.brand,
            }
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                r = await self._http.post("/v1/charges", json=payload, headers=_trace_headers())
                if r.status_code in (200, 201):
                    return _charge(r.json())
                _refuse_unauthorised(r)
                if 400 <= r.status_code < 500 and r.status_code not in (408, 409, 429):
                    return RailRejected(f"rail refused the charge ({r.status_code})")
                retry_after = parse_retry_after(r.headers.get("retry-after"))
                log.warning("rail answered %s for %s; checking", r.status_code, reference)
            except (httpx.TransportError, ValueError) as e:
                log.warning("ambiguous rail outcome for %s (%s); checking", reference, e)
            found = await self.find(reference)
            if found is not None:
                return found
            delay = RAIL_RETRY.delay(attempt, retry_after)
            if delay is None:
                log.error(
                    "rail unavailable for %s after %d attempts; the job is retried later",
                    reference,
                    attempt,
                )
                raise RailUnavailable(f"rail unavailable for {reference}")
            await asyncio.sleep(delay)

    async def find(self, reference: str) -> RailCharge | None:
        """The charge made under ``reference``, or None (also when the rail cannot say)."""
        try:
            r = await self._http.get(f"/v1/charges/{reference}", headers=_trace_headers())
        except httpx.TransportError:
            return None
        if r.status_code == 200:
            try:
                return _charge(r.json())
            except ValueError:
                return None
        _refuse_unauthorised(r)
        return None

    async def settlement_report(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(100_000):  # bounded: at most 100k pages
            params = {"limit": "1000", **({"after": after} if after else {})}
            r = await self._http.get("/v1/settlement-report", params=params)
            _refuse_unauthorised(r)
            r.raise_for_status()
            page = r.json()
            items += page["data"]
            after = page.get("next_after")
            if not after:
                break
        return items


class Rails:
    """The live rail and the sandbox rail: a transfer goes to the rail of its tenant's
    mode, the only place where the two modes' code paths part (docs/design.md §10)."""

    def __init__(self, live: RailClient, test: RailClient) -> None:
        self.live = live
        self.test = test

    def for_tenant(self, tenant: str) -> RailClient:
        """The rail that ``tenant``'s transfers go to: the sandbox rail for a sandbox twin."""
        return self.test if mode_of(tenant) is Mode.TEST else self.live

    async def close(self) -> None:
        await self.live.close()
        if self.test is not self.live:
            await self.test.close()


def _refuse_unauthorised(r: httpx.Response) -> None:
    if r.status_code in (401, 403):
        log.error("the rail refused our service token (%s); check our client", r.status_code)
        raise RailUnavailable(f"the rail refused our service token ({r.status_code})")


def _charge(doc: dict[str, Any]) -> RailCharge:
    return RailCharge(doc["charge_id"], doc["status"], int(doc["amount"]), doc["currency"])


def _trace_headers() -> dict[str, str]:
    """W3C trace context and correlation id, so the rail's spans join the transfer's trace."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    cid = current_correlation_id()
    if cid:
        headers["X-Correlation-ID"] = cid
    return headers
