"""Live and test mode are a property of the tenant id (docs/design.md §10, ADR 0037)."""

from __future__ import annotations

from clearway.shared.mode import Mode, live_tenant, mode_of, sandbox_twin
from clearway.shared.residency import Residency


def test_a_tenant_is_live_and_its_twin_is_in_test_mode():
    assert mode_of("tnt_acme") is Mode.LIVE
    assert sandbox_twin("tnt_acme") == "tnt_acme_test"
    assert mode_of("tnt_acme_test") is Mode.TEST


def test_the_twin_of_a_twin_is_itself_and_leads_back_to_its_live_tenant():
    assert sandbox_twin("tnt_acme_test") == "tnt_acme_test"
    assert live_tenant("tnt_acme_test") == "tnt_acme"
    assert live_tenant("tnt_acme") == "tnt_acme"


def test_a_twin_lives_in_its_live_tenants_region():
    residency = Residency(region="eu", default_region="eu", tenant_regions={"tnt_acme": "us"})
    assert residency.region_of("tnt_acme_test") == "us"
    assert not residency.serves("tnt_acme_test")
