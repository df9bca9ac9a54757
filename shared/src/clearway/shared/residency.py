"""Data residency: which region a tenant's personal data and cards live in (docs/design.md §9).

A tenant has one home region (``eu``, ``us``). A service that holds personal data or
cards (the vault; ADR 0032) is deployed once per region, each deployment with its own
database, and serves only the tenants of its region: a request for another region's
tenant is refused before anything is read or written (:class:`WrongRegion`, answered by
the HTTP edge as 421 Misdirected Request, RFC 9110 §15.5.20, naming the tenant's
region). Only tokens and ids cross regions; global services route their calls by
:meth:`Residency.region_of`.

The tenant → region map is configuration (``CLEARWAY_TENANT_REGIONS``, with
``CLEARWAY_DEFAULT_REGION`` for tenants it does not list), the same in every
deployment of every region: it is read before any data access, and no region has to
ask another's database where a tenant lives. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

from clearway.shared.mode import live_tenant

__all__ = ["REGIONS", "Region", "Residency", "WrongRegion"]

Region = Literal["eu", "us"]
#: Every region the platform runs in.
REGIONS: tuple[Region, ...] = get_args(Region)


class WrongRegion(Exception):
    """A request reached a deployment of ``served`` for a tenant whose data lives in
    ``region``; nothing was read or written. Carries ids only."""

    def __init__(self, tenant: str, region: Region, served: Region) -> None:
        super().__init__(f"tenant {tenant} is served in region {region}, not {served}")
        self.tenant = tenant
        self.region = region
        self.served = served


@dataclass(frozen=True)
class Residency:
    """The tenants' home regions and, for a regional deployment, its own region."""

    region: Region = "eu"
    """The region of this deployment."""
    tenant_regions: Mapping[str, Region] = field(default_factory=dict)
    """Home region by tenant id; a tenant not listed lives in ``default_region``."""
    default_region: Region = "eu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tenant_regions", MappingProxyType(dict(self.tenant_regions)))

    def region_of(self, tenant: str) -> Region:
        """The home region of ``tenant``; a sandbox twin lives where its live tenant
        does (docs/design.md §10)."""
        return self.tenant_regions.get(live_tenant(tenant), self.default_region)

    def serves(self, tenant: str) -> bool:
        """Whether this deployment holds ``tenant``'s data."""
        return self.region_of(tenant) == self.region

    def check(self, tenant: str) -> None:
        """Return when this deployment serves ``tenant``; raise :class:`WrongRegion`
        naming the tenant's region otherwise. Call it before any data access."""
        home = self.region_of(tenant)
        if home != self.region:
            raise WrongRegion(tenant, home, self.region)

    def regions_in_use(self) -> frozenset[Region]:
        """The regions some tenant can live in (the default and every mapped one)."""
        return frozenset({self.default_region, *self.tenant_regions.values()})
