"""Residency of the consent store (docs/design.md §9, ADR 0039): a consent deployment
holds the users and consents of its own region's tenants only. Here the service is the
``eu`` deployment and ``tnt_demo_beta`` lives in ``us``: every route that touches a
user or a consent answers its requests 421 naming ``us`` before anything is read or
written, while the global authorization server (client tokens, JWKS) serves it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clearway.consent import consumers
from clearway.consent.settings import ConsentSettings
from clearway.shared.events import new_event
from clearway.shared.metrics import CONSUMER_MESSAGES_TOTAL

from .conftest import payment_details

pytestmark = pytest.mark.integration


@pytest.fixture
def consent_settings(consent_settings: ConsentSettings) -> ConsentSettings:
    platform = consent_settings.platform.replace(
        region="eu", tenant_regions={"tnt_demo_beta": "us"}
    )
    return consent_settings.model_copy(update={"platform": platform})


def misdirected(r) -> None:
    assert r.status_code == 421, r.text
    problem = r.json()
    assert problem["type"].endswith("/wrong-region") and problem["region"] == "us"


async def written(consent) -> tuple[int, int, int]:
    """Rows of the us tenant in this (eu) database: consents (each written with its
    event, in one transaction), users, pushed authorization requests."""
    async with consent.svc.pool.acquire() as conn:
        return (
            await conn.fetchval("SELECT count(*) FROM consents WHERE tenant LIKE 'tnt_demo_beta%'"),
            await conn.fetchval("SELECT count(*) FROM users WHERE tenant LIKE 'tnt_demo_beta%'"),
            await conn.fetchval(
                "SELECT count(*) FROM pushed_requests WHERE client_id LIKE 'tnt_demo_beta%'"
            ),
        )


async def test_another_regions_tenant_gets_421_naming_its_region_and_nothing_is_written(consent):
    beta, alpha = consent.client(1, "partner"), consent.client(0, "partner")
    assert await written(consent) == (0, 0, 0)  # the seed kept bob (us) out of eu
    token = await consent.token(beta, "consents:write consents:read consents:revoke")
    auth = {"Authorization": f"Bearer {token}"}
    body = {"purpose": "Rent", "authorization_details": [payment_details()]}
    url = consent.url
    misdirected(await consent.http.post(f"{url}/v1/consents", json=body, headers=auth))
    misdirected(await consent.http.get(f"{url}/v1/consents", headers=auth))
    misdirected(await consent.http.get(f"{url}/v1/consents/cns_x", headers=auth))
    misdirected(await consent.http.delete(f"{url}/v1/consents/cns_x", headers=auth))
    # its pushed authorization requests and the consent page belong to its region too
    par = {"response_type": "code", "consent_id": "cns_x", "redirect_uri": "http://x"}
    auth_basic = (beta["client_id"], beta["client_secret"])
    misdirected(await consent.http.post(f"{url}/oauth/par", data=par, auth=auth_basic))
    code = {"grant_type": "authorization_code", "code": "x", "redirect_uri": "http://x"}
    misdirected(await consent.http.post(f"{url}/oauth/token", data=code, auth=auth_basic))
    page = f"{url}/oauth/authorize?client_id={beta['client_id']}&request_uri=urn:x"
    misdirected(await consent.http.get(page))
    assert await written(consent) == (0, 0, 0)
    # the eu tenant is served as before
    created = await consent.create_consent(alpha)
    assert created["tenant"] == "tnt_demo_alpha"


async def test_a_transfer_of_another_regions_tenant_is_skipped_and_counted(consent):
    skipped = CONSUMER_MESSAGES_TOTAL.labels(consumers.GROUP, "other_region")
    before = skipped._value.get()
    event = new_event(
        type=consumers.TRANSFER_CREATED,
        source="/clearway/transfer",
        aggregate_id="tr_1",
        aggregate_version=1,
        data={"consent_id": "cns_elsewhere"},
        tenant="tnt_demo_beta",
        time=datetime.now(UTC),
    )
    async with consent.svc.pool.acquire() as conn:
        await consumers.handle_transfer_created(consent.svc, conn, event)
    assert skipped._value.get() == before + 1
