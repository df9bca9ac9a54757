"""The transfer service's client for the card vault (docs/design.md §9).

Two calls, each with its own short-lived service token: ``check`` (scope
``cards:verify``) when a transfer with a ``tok_`` source is created, and
``detokenize`` (scope ``cards:detokenize``) by the executor just before the
submission to the rail. The card number lives only in memory for that one
submission; it is never stored, logged or put on an event.

A vault that cannot be reached, or refuses our own token, is
:class:`VaultUnavailable`: a ``ConnectionError``, so the HTTP edge answers 503 with
``Retry-After`` and the consumers retry; a transfer is never created with an
unchecked token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx

from clearway.shared.auth.client_credentials import ServiceTokenSource
from clearway.transfer.domain import TransferError

log = logging.getLogger(__name__)
CARD_TOKEN_PREFIX = "tok_"  # noqa: S105 (a prefix, not a secret)


class VaultUnavailable(ConnectionError):
    """The vault could not answer (or refused our service token); retry later."""


class UnknownCardToken(TransferError):
    """The card token does not exist for the transfer's tenant."""


@dataclass(frozen=True)
class Card:
    """A detokenized card, for one rail submission; ``repr`` never shows the number."""

    number: str = field(repr=False)
    exp_month: int
    exp_year: int
    brand: str


def is_card_token(source: str) -> bool:
    return source.startswith(CARD_TOKEN_PREFIX)


class VaultClient:
    def __init__(
        self,
        base_url: str,
        *,
        verify: ServiceTokenSource | None = None,
        detokenize: ServiceTokenSource | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._verify = verify
        self._detokenize = detokenize
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)

    async def close(self) -> None:
        await self._http.aclose()
        for source in (self._verify, self._detokenize):
            if source is not None:
                await source.aclose()

    async def check(self, tenant: str, token: str) -> None:
        """Return when ``token`` is a card of ``tenant``; :class:`UnknownCardToken` when
        it is not."""
        r = await self._call("GET", f"/internal/v1/tenants/{tenant}/cards/{token}", self._verify)
        if r.status_code == 404:
            raise UnknownCardToken("unknown card token for this tenant")
        _expect_ok(r)

    async def detokenize(self, tenant: str, token: str, reference: str) -> Card:
        """The card behind ``token`` for submitting payment ``reference`` to the rail (the
        vault records the use); :class:`UnknownCardToken` when the vault has no such card."""
        r = await self._call(
            "POST",
            f"/internal/v1/tenants/{tenant}/cards/{token}/detokenize",
            self._detokenize,
            json={"purpose": "rail_submission", "reference": reference},
        )
        if r.status_code == 404:
            raise UnknownCardToken("unknown card token for this tenant")
        _expect_ok(r)
        doc = r.json()
        return Card(doc["number"], int(doc["exp_month"]), int(doc["exp_year"]), doc["brand"])

    async def _call(
        self, method: str, path: str, auth: ServiceTokenSource | None, **kw: object
    ) -> httpx.Response:
        try:
            return await self._http.request(method, path, auth=auth, **kw)  # type: ignore[arg-type]
        except httpx.TransportError as e:
            raise VaultUnavailable(f"the vault cannot be reached ({type(e).__name__})") from None


def _expect_ok(r: httpx.Response) -> None:
    if r.status_code == 200:
        return
    if r.status_code in (401, 403):
        log.error("the vault refused our service token (%s); check our client", r.status_code)
    raise VaultUnavailable(f"the vault answered {r.status_code}")
