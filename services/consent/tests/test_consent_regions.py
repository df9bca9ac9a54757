"""Two consent deployments, two regions (docs/design.md §9, ADR 0039): ``eu`` is the
issuer's region (its database holds the global authorization server's tables beside
its consents), ``us`` keeps ``tnt_demo_beta``'s users, consents and evidence in its own
database and the clients, signing keys and issued tokens in the global one. A us
partner's consent is created, authorised and redeemed at the us deployment; the token
is the one issuer's, verified with its JWKS like every other service does; nothing of
the consent or the user rests in the eu database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from clearway.consent.bootstrap import build_app
from clearway.consent.settings import ConsentSettings
from clearway.shared.auth import HttpJwksSource, TokenVerifier
from clearway.shared.crypto.tenant_keys import shred_tenant
from clearway.shared.testing.helpers import free_port, pg_dump_data, serve

from .conftest import Consent, authorised_token, payment_details

pytestmark = pytest.mark.integration

REGIONS = {"tnt_demo_beta": "us"}
IBAN = "GB33BUKB20201555555555"


@pytest.fixture
def consent_settings(consent_settings: ConsentSettings) -> ConsentSettings:
    platform = consent_settings.platform.replace(region="eu", tenant_regions=REGIONS)
    return consent_settings.model_copy(update={"platform": platform})


@pytest_asyncio.fixture
async def us_consent(
    consent: Consent, consent_settings: ConsentSettings, other_region_dsn: str
) -> AsyncIterator[Consent]:
    """The us deployment: its region's database and KEK token, the global database and
    signing token of the issuer's region, the same issuer URL (the eu deployment's)."""
    port = free_port()
    settings = consent_settings.model_copy(
        update={
            "platform": consent_settings.platform.replace(
                region="us", database_url=other_region_dsn
            ),
            "port": port,
            "hsm_token": "clearway-us",
            "signing_hsm_token": consent_settings.hsm_token,
            "global_database_url": consent_settings.platform.database_url,
        }
    )
    app = build_app(settings)
    async with serve(app, port) as url:
        yield Consent(url, app, settings, consent.clients, consent.http)


async def test_a_us_tenants_consent_lives_in_us_and_its_token_is_the_one_issuers(
    consent, us_consent, platform, other_region_dsn
):
    beta = us_consent.client(1, "partner")
    # the page of the us deployment serves beta's client (the eu one answers 421)
    page = f"/oauth/authorize?client_id={beta['client_id']}&request_uri=urn:x"
    assert (await consent.http.get(consent.url + page)).status_code == 421
    assert (await us_consent.http.get(us_consent.url + page)).status_code != 421

    details = {**payment_details(), "creditorAccount": {"iban": IBAN}}
    consent_id, token = await authorised_token(
        us_consent, beta, "usr_bob", purpose="Rent to Gracie", authorization_details=[details]
    )
    # one issuer, one JWKS: a resource server trusting the eu deployment verifies it
    verifier = TokenVerifier(
        issuer=consent.settings.issuer,
        audience="clearway-transfer",
        jwks_source=HttpJwksSource(f"{consent.url}/.well-known/jwks.json"),
    )
    claims = await verifier.verify(token)
    assert claims.consent_id == consent_id and claims.tenant == "tnt_demo_beta"
    # introspection of the consent-bound token at the us deployment: the consent is there
    r = await us_consent.http.post(
        f"{us_consent.url}/oauth/introspect",
        data={"token": token},
        auth=(beta["client_id"], beta["client_secret"]),
    )
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    # the consent's own routes are the us deployment's
    read = await us_consent.token(beta, "consents:read")
    r = await us_consent.http.get(
        f"{us_consent.url}/v1/consents/{consent_id}", headers={"Authorization": f"Bearer {read}"}
    )
    assert r.status_code == 200 and r.json()["status"] == "Authorised", r.text

    async with consent.svc.pool.acquire() as conn:  # the eu (and global) database
        rows = {
            t: await conn.fetchval(f"SELECT count(*) FROM {t} WHERE tenant = 'tnt_demo_beta'")
            for t in ("consents", "users", "authorization_codes")
        }
        assert rows == {"consents": 0, "users": 0, "authorization_codes": 0}
        bound = "SELECT consent_id FROM issued_tokens WHERE consent_id IS NOT NULL"
        assert [r["consent_id"] for r in await conn.fetch(bound)] == [consent_id]
    async with us_consent.svc.pool.acquire() as conn:  # the us database
        assert await conn.fetchval("SELECT count(*) FROM clients") == 0
        assert await conn.fetchval("SELECT count(*) FROM issued_tokens") == 0
        assert await conn.fetchval("SELECT tenant FROM consents WHERE id = $1", consent_id)
        assert await conn.fetchval("SELECT count(*) FROM users") == 1  # bob, seeded in us
    # only ids crossed (the token's record: client, tenant, subject and consent ids),
    # nothing of the consent's or the user's content
    eu_dump, us_dump = pg_dump_data(platform.database_url), pg_dump_data(other_region_dsn)
    assert consent_id in us_dump
    for text in (IBAN, "Rent to Gracie", "Bob Demo"):
        assert text not in eu_dump and text not in us_dump  # sealed in us, absent in eu


async def test_each_region_shreds_the_tenants_whose_data_it_holds(consent, us_consent):
    """A tenant's key is in its region's database (ADR 0039): shredding the us tenant
    there (the us deployment's ``clearway-keys consent shred-tenant``) makes its consent
    unreadable at the us deployment; the eu tenant's reads as before."""
    alpha, beta = consent.client(0, "partner"), us_consent.client(1, "partner")
    mine = await consent.create_consent(alpha)
    theirs = await us_consent.create_consent(beta, purpose="Rent to Gracie")
    keys = "SELECT array_agg(tenant ORDER BY tenant) FROM tenant_keys WHERE tenant LIKE 'tnt_%'"
    async with consent.svc.pool.acquire() as conn:
        eu_keys = await conn.fetchval(keys)
    async with us_consent.svc.pool.acquire() as conn:
        us_keys = await conn.fetchval(keys)
        await shred_tenant(
            conn, "consent", us_consent.svc.events, tenant="tnt_demo_beta", reason="offboarded"
        )
    assert "tnt_demo_alpha" in eu_keys and "tnt_demo_beta" not in eu_keys
    assert "tnt_demo_beta" in us_keys and "tnt_demo_alpha" not in us_keys
    await us_consent.svc.pii.tenant_keys.refresh()  # its tenant-keys job

    read = await us_consent.token(beta, "consents:read")
    r = await us_consent.http.get(
        f"{us_consent.url}/v1/consents/{theirs['id']}",
        headers={"Authorization": f"Bearer {read}"},
    )
    assert r.status_code == 403 and r.json()["type"].endswith("tenant-offboarded"), r.text
    read = await consent.token(alpha, "consents:read")
    r = await consent.http.get(
        f"{consent.url}/v1/consents/{mine['id']}", headers={"Authorization": f"Bearer {read}"}
    )
    assert r.status_code == 200 and r.json()["purpose"] == mine["purpose"], r.text
