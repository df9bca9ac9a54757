"""Residency (docs/design.md §9): tenants' home regions from settings, the refusal of
another region's tenant as a 421 naming its region, per-region vault URLs."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from clearway.shared.http import create_app
from clearway.shared.residency import REGIONS, Residency, WrongRegion
from clearway.shared.settings import PlatformSettings, SettingsError
from clearway.transfer.settings import TransferSettings

ENV = {"CLEARWAY_REGION": "eu", "CLEARWAY_TENANT_REGIONS": '{"ten_b": "us"}'}


def test_a_tenant_lives_in_its_mapped_region_or_the_default():
    residency = PlatformSettings.from_env(ENV).residency()
    assert REGIONS == ("eu", "us")
    assert (residency.region_of("ten_b"), residency.region_of("ten_a")) == ("us", "eu")
    assert residency.serves("ten_a") and not residency.serves("ten_b")
    residency.check("ten_a")
    with pytest.raises(WrongRegion) as refused:
        residency.check("ten_b")
    assert (refused.value.region, refused.value.served) == ("us", "eu")
    us_default = Residency("us", {"ten_a": "eu"}, default_region="us")
    assert us_default.serves("ten_new") and us_default.regions_in_use() == {"eu", "us"}


def test_an_unknown_region_is_refused_naming_the_variable():
    with pytest.raises(SettingsError) as e:
        PlatformSettings.from_env({"CLEARWAY_TENANT_REGIONS": '{"ten_a": "mars"}'})
    assert "CLEARWAY_TENANT_REGIONS" in e.value.problems
    with pytest.raises(SettingsError) as e:
        PlatformSettings.from_env({"CLEARWAY_REGION": "apac"})
    assert "CLEARWAY_REGION" in e.value.problems


def test_wrong_region_is_a_421_problem_naming_the_tenants_region():
    app: FastAPI = create_app("test", title="t")
    residency = Residency("eu", {"ten_b": "us"})

    @app.get("/v1/things/{tenant}")
    async def thing(tenant: str) -> dict[str, str]:
        residency.check(tenant)
        return {"tenant": tenant}

    with TestClient(app) as client:
        assert client.get("/v1/things/ten_a").status_code == 200
        r = client.get("/v1/things/ten_b")
    assert r.status_code == 421
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"].endswith("/wrong-region") and problem["region"] == "us"
    assert "region us" in problem["title"] and "region eu" in problem["detail"]


def test_the_transfer_service_needs_a_vault_in_every_region_tenants_live_in():
    platform = PlatformSettings.from_env(ENV)
    TransferSettings(platform=platform, vault_urls={"eu": "http://a", "us": "http://b"})
    with pytest.raises(ValueError, match=r"CLEARWAY_TRANSFER_VAULT_URLS.*region.* us"):
        TransferSettings(platform=platform, vault_urls={"eu": "http://a"})
