"""Residency (docs/design.md §9, ADR 0032): a vault deployment serves the tenants of its
own region only. ``ten_a`` lives in ``eu`` and ``ten_b`` in ``us``; each region's vault
has its own database. A request for the other region's tenant is a 421 naming the
tenant's region, and nothing of it is read or written in the wrong region's database."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from clearway.shared.testing.helpers import serve
from clearway.vault.bootstrap import build_app
from clearway.vault.settings import VaultSettings

from .conftest import VISA_DIGITS, VaultUnderTest
from .test_vault_api import _pg_dump

pytestmark = pytest.mark.integration

REGIONS = {"ten_a": "eu", "ten_b": "us"}
DETOKENIZE = {"purpose": "rail_submission", "reference": "CWREF1"}


@asynccontextmanager
async def regional_vault(platform, issuer, region: str) -> AsyncIterator[VaultUnderTest]:
    # no relay: the outbox keeps every event this deployment wrote, for the checks below
    settings = VaultSettings(
        platform=platform.replace(
            oauth_issuer=issuer.issuer, region=region, tenant_regions=REGIONS
        ),
        jwks=issuer.jwks(),
        run_relay=False,
    )
    app = build_app(settings)
    async with serve(app) as url:
        yield VaultUnderTest(url, issuer, app)


def _dump(dsn: str) -> str:
    return subprocess.run(
        [_pg_dump(), "--no-owner", "--data-only", dsn], capture_output=True, text=True, check=True
    ).stdout


def _internal(token: str) -> str:
    return f"/internal/v1/tenants/ten_b/cards/{token}"


def _misdirected(r, region: str) -> None:
    assert r.status_code == 421, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"].endswith("/wrong-region") and problem["region"] == region
    assert region in problem["title"]


async def test_another_regions_tenant_is_refused_and_its_own_region_serves_it(
    platform, other_region_dsn, issuer
):
    us_platform = platform.replace(database_url=other_region_dsn)
    async with (
        regional_vault(platform, issuer, "eu") as eu,
        regional_vault(us_platform, issuer, "us") as us,
    ):
        # the eu vault: ten_a is served, ten_b refused with its region
        assert (await eu.tokenize(tenant="ten_a")).status_code == 201
        refused = await eu.tokenize(tenant="ten_b", holder_name="Grace Hopper")
        _misdirected(refused, "us")
        assert VISA_DIGITS not in refused.text and "Grace" not in refused.text

        # the us vault serves ten_b; only the token id crosses back to global services
        card = await us.tokenize(tenant="ten_b", holder_name="Grace Hopper")
        assert card.status_code == 201, card.text
        token = card.json()["id"]
        async with us.executor(scopes=("cards:verify",)) as c:
            assert (await c.get(f"/internal/v1/tenants/ten_b/cards/{token}")).status_code == 200
        async with us.client(tenant="ten_a") as c:
            _misdirected(await c.get(f"/v1/cards/{token}"), "eu")

        # internal routes of the eu vault refuse ten_b before looking anything up,
        # with the scope (421) and without it (403, and no refusal recorded here)
        async with eu.executor(scopes=("cards:verify",)) as c:
            _misdirected(await c.get(_internal(token)), "us")
            r = await c.post(f"{_internal(token)}/detokenize", json=DETOKENIZE)
            assert r.status_code == 403, r.text
        async with eu.executor() as c:
            r = await c.post(f"{_internal(token)}/detokenize", json=DETOKENIZE)
            _misdirected(r, "us")
            assert VISA_DIGITS not in r.text
        async with eu.client(tenant="ten_b") as c:
            _misdirected(await c.get(f"/v1/cards/{token}"), "us")

    # nothing of ten_b in the eu database: no card, no tenant key, no event, no refusal
    eu_dump, us_dump = _dump(platform.database_url), _dump(other_region_dsn)
    assert "ten_a" in eu_dump and "ten_b" not in eu_dump and token not in eu_dump
    assert "ten_b" in us_dump and token in us_dump and "ten_a" not in us_dump
    for dsn, tenant in ((platform.database_url, "ten_a"), (other_region_dsn, "ten_b")):
        conn = await asyncpg.connect(dsn)
        try:
            cards = await conn.fetch("SELECT tenant FROM vault.cards")
        finally:
            await conn.close()
        assert [r["tenant"] for r in cards] == [tenant]
