"""The transfer service's client for the card vault (docs/design.md §9).

Two calls, each with its own short-lived service token: ``check`` (scope
``cards:verify``) when a transfer with a ``tok_`` source is created, and
``detokenize`` (scope ``cards:detokenize``) by the executor just before the
submission to the rail. The card number lives only in memory for that one
submission; it is never stored, logged or put on an event.

Cards live in the vault of the tenant's region (residency, docs/design.md §9): each
call goes to the vault of ``residency.region_of(tenant)``; only the token, the tenant
id and the payment reference cross regions (and, for the rail submission, the number
in that one response).

A vault that cannot be reached, or refuses our own token, is
:class:`VaultUnavailable`: a ``ConnectionError``, so the HTTP edge answers 503 with
``Retry-After`` and the consumers retry; a transfer is never created with an
unchecked token. So is a vault that answers 421 (it does not serve the tenant's
region: our region map and its disagree, a configuration error to fix, not a
missing card).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from clearway.shared.auth.client_credentials import ServiceTokenSource
from clearway.shared.residency import Region, Residency
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
    """The vaults of every region, each call routed by the tenant's home region."""

    def __init__(
        self,
        base_urls: Mapping[Region, str],
        residency: Residency,
        *,
        verify: ServiceTokenSource | None = None,
        detokenize: ServiceTokenSource | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._verify = verify
        self._detokenize = detokenize
        self._residency = residency
        self._http = {
            region: httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout_s)
            for region, url in base_urls.items()
        }

    async def close(self) -> None:
        for http in self._http.values():
            await http.aclose()
        for source in (self._verify, self._detokenize):
            if source is not None:
                await source.aclose()

    async def check(self, tenant: str, token: str) -> None:
        """Return when ``token`` is a card of ``tenant``; :class:`UnknownCardToken` when
        it is not."""
        r = await self._call(
            tenant, "GET", f"/internal/v1/tenants/{tenant}/cards/{token}", self._verify
        )
        if r.status_code == 404:
            raise UnknownCardToken("unknown card token for this tenant")
        _expect_ok(r)

    async def detokenize(self, tenant: str, token: str, reference: str) -> Card:
        """The card behind ``token`` for submitting payment ``reference`` to the rail (the
        vault records the use); :class:`UnknownCardToken` when the vault has no such card."""
        r = await self._call(
            tenant,
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
        self, tenant: str, method: str, path: str, auth: ServiceTokenSource | None, **kw: object
    ) -> httpx.Response:
        region = self._residency.region_of(tenant)
        http = self._http.get(region)
        if http is None:  # settings refuse this at start; a guard, not a path
            raise VaultUnavailable(f"no vault is configured for region {region}")
        try:
            r = await http.request(method, path, auth=auth, **kw)  # type: ignore[arg-type]
        except httpx.TransportError as e:
            raise VaultUnavailable(
                f"the vault of region {region} cannot be reached ({type(e).__name__})"
            ) from None
        if r.status_code == 421:
            log.error(
                "the vault of region %s does not serve tenant %s (it says region %s):"
                " the tenant region maps disagree",
                region,
                tenant,
                _region_named(r),
            )
        return r


def _region_named(r: httpx.Response) -> object:
    try:
        doc = r.json()
    except ValueError:
        return None
    return doc.get("region") if isinstance(doc, dict) else None


def _expect_ok(r: httpx.Response) -> None:
    if r.status_code == 200:
        return
    if r.status_code in (401, 403):
        log.error("the vault refused our service token (%s); check our client", r.status_code)
    raise VaultUnavailable(f"the vault answered {r.status_code}")
