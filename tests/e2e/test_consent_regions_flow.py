"""A us tenant pays under its consent, with two regions' databases (docs/design.md §9,
ADR 0039): the consent deployment of region ``us`` keeps ``tnt_demo_beta``'s consent and
its user ``bob`` in the us database and the clients and issued tokens in the global one
(the eu deployment's, the issuer's). The partner creates the consent, pushes the request
and redeems the code at the us deployment, ``bob`` approves it on the us consent page,
and the transfer service, which trusts the one issuer's JWKS, accepts the token; the
transfer settles and the us deployment marks the single-use consent ``Consumed``."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import uuid
from contextlib import AsyncExitStack
from urllib.parse import parse_qs, urlparse

import asyncpg
import httpx
import pytest

from clearway.consent.bootstrap import build_app as build_consent
from clearway.consent.settings import ConsentSettings
from clearway.rail.bootstrap import build_app as build_rail
from clearway.rail.settings import RailSettings
from clearway.shared.testing.helpers import eventually, free_port, pg_dump_data, serve
from clearway.transfer.bootstrap import build_app as build_transfer
from clearway.transfer.settings import TransferSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BETA = "tnt_demo_beta"
REDIRECT = "http://127.0.0.1:8765/callback"
PURPOSE = "Top up the Beta treasury"
#: the transfer service's demo accounts of tnt_demo_beta (bob's pays its treasury)
TREASURY_IBAN = "FR1420041010050500013M02606"
PAYMENT = {
    "amount": 4200,
    "currency": "EUR",
    "source": "acct_bob",
    "destination": "acct_betaTreasury",
}


def _settings(platform, port: int, **regional) -> ConsentSettings:
    return ConsentSettings(
        platform=platform,
        port=port,
        seed_demo=True,
        argon2_time_cost=1,  # cheap hashes keep the test fast
        argon2_memory_kib=1024,
        **regional,
    )


async def _approve_as_bob(us_url: str, client_id: str, request_uri: str) -> str:
    """The user's browser on the us consent page: sign in, approve; returns the code."""
    page = f"/oauth/authorize?client_id={client_id}&request_uri={request_uri}"
    async with httpx.AsyncClient(base_url=us_url, timeout=30) as browser:
        assert (await browser.get(page)).status_code == 200
        login = {"username": "bob", "password": "demo-password", "next": page}
        assert (await browser.post("/login", data=login)).status_code == 303
        shown = await browser.get(page)
        assert shown.status_code == 200 and PURPOSE in shown.text, shown.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', shown.text)
        assert csrf is not None
        decision = {
            "request_uri": request_uri,
            "client_id": client_id,
            "csrf": csrf.group(1),
            "decision": "approve",
        }
        r = await browser.post("/oauth/authorize", data=decision)
        assert r.status_code == 303, r.text
        return parse_qs(urlparse(r.headers["location"]).query)["code"][0]


async def test_a_us_tenants_consent_token_from_its_region_pays_at_the_transfer_service(
    platform, other_region_dsn, tmp_path
):
    eu_port, us_port = free_port(), free_port()
    eu_platform = platform.replace(
        oauth_issuer=f"http://127.0.0.1:{eu_port}",
        local_dir=tmp_path,
        region="eu",
        tenant_regions={BETA: "us"},
    )
    us_platform = eu_platform.replace(region="us", database_url=other_region_dsn)
    async with AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as http:
        eu_url = await stack.enter_async_context(
            serve(build_consent(_settings(eu_platform, eu_port)), eu_port)
        )
        us = _settings(
            us_platform,
            us_port,
            hsm_token="clearway-us",
            signing_hsm_token="clearway",
            global_database_url=platform.database_url,
        )
        us_url = await stack.enter_async_context(serve(build_consent(us), us_port))
        clients = {
            c["client_id"]: c for c in json.loads((tmp_path / "dev-clients.json").read_text())
        }
        rail_url = await stack.enter_async_context(
            serve(build_rail(RailSettings(platform=eu_platform)))
        )
        transfer = TransferSettings(
            platform=eu_platform,
            rail_url=rail_url,
            client_secret=clients["clearway-transfer"]["client_secret"],
            seed_demo=True,
        )
        transfer_url = await stack.enter_async_context(serve(build_transfer(transfer)))

        partner = clients[f"{BETA}-partner"]
        auth = (partner["client_id"], partner["client_secret"])
        r = await http.post(
            f"{eu_url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": "consents:write consents:read"},
            auth=auth,
        )
        assert r.status_code == 200, r.text
        bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
        body = {
            "purpose": PURPOSE,
            "subject": "usr_bob",
            "scopes": ["payments:initiate", "payments:read"],
            "authorization_details": [
                {
                    "type": "payment_initiation",
                    "instructedAmount": {"amount": 4200, "currency": "EUR"},
                    "creditorName": "Beta treasury",
                    "creditorAccount": {"iban": TREASURY_IBAN},
                }
            ],
        }
        refused = await http.post(f"{eu_url}/v1/consents", json=body, headers=bearer)
        assert refused.status_code == 421 and refused.json()["region"] == "us", refused.text
        created = await http.post(f"{us_url}/v1/consents", json=body, headers=bearer)
        assert created.status_code == 201, created.text
        consent_id = created.json()["id"]

        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        par = {
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "scope": "payments:initiate payments:read",
            "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
            "code_challenge_method": "S256",
            "consent_id": consent_id,
        }
        pushed = await http.post(f"{us_url}/oauth/par", data=par, auth=auth)
        assert pushed.status_code == 201, pushed.text
        code = await _approve_as_bob(us_url, partner["client_id"], pushed.json()["request_uri"])
        redeemed = await http.post(
            f"{us_url}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=auth,
        )
        assert redeemed.status_code == 200, redeemed.text
        user_token = {"Authorization": f"Bearer {redeemed.json()['access_token']}"}

        # the transfer service verifies it with the issuer's (eu) JWKS
        made = await http.post(
            f"{transfer_url}/v1/transfers",
            json=PAYMENT,
            headers={**user_token, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert made.status_code == 201, made.text
        transfer_id = made.json()["id"]

        async def settled() -> bool:
            r = await http.get(f"{transfer_url}/v1/transfers/{transfer_id}", headers=user_token)
            return r.json()["status"] == "settled"

        await eventually(settled, timeout=60)

        async def consumed() -> bool:  # transfer.created, read by the us deployment
            r = await http.get(f"{us_url}/v1/consents/{consent_id}", headers=bearer)
            return r.json()["status"] == "Consumed"

        await eventually(consumed, timeout=60)

    # the consent and its user rest in the us database only; the global (eu) one
    # holds the ids on its token's record
    for dsn, held in ((platform.database_url, 0), (other_region_dsn, 1)):
        conn = await asyncpg.connect(dsn)
        try:
            n = await conn.fetchval(
                "SELECT count(*) FROM consent.consents WHERE id = $1", consent_id
            )
            users = await conn.fetchval(
                f"SELECT count(*) FROM consent.users WHERE tenant = '{BETA}'"
            )
        finally:
            await conn.close()
        assert (n, users) == (held, held)
    assert PURPOSE not in pg_dump_data(platform.database_url)
