"""Version pins (docs/design.md §10): a client is pinned to the current dated version when
registered, its tokens say so (``cw_ver``), and operators list who is still on a version."""

from __future__ import annotations

import base64
import json

import pytest

from clearway.consent import clients
from clearway.shared.versions import CURRENT_VERSION, INITIAL_VERSION, VERSION_CLAIM

pytestmark = pytest.mark.integration


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def legacy_client(consent, tenant: str, client_id: str) -> dict:
    secret = await clients.register_client(
        consent.svc,
        client_id=client_id,
        tenant=tenant,
        name="Built against 2026-11-01",
        scopes=["payments:read"],
        api_version=INITIAL_VERSION,
    )
    return {"client_id": client_id, "client_secret": secret}


async def test_tokens_carry_the_clients_pin(consent):
    current = await consent.token(consent.client(0, "admin"), "admin:clients")
    assert claims(current)[VERSION_CLAIM] == CURRENT_VERSION == "2026-12-01"

    old = await legacy_client(consent, "tnt_demo_alpha", "tnt_demo_alpha-legacy")
    assert claims(await consent.token(old, "payments:read"))[VERSION_CLAIM] == INITIAL_VERSION


async def test_operators_list_the_clients_still_on_a_version_in_their_scope(consent):
    await legacy_client(consent, "tnt_demo_alpha", "tnt_demo_alpha-legacy")
    await legacy_client(consent, "tnt_demo_beta", "tnt_demo_beta-legacy")
    query = {"api_version": INITIAL_VERSION}

    admin = await consent.token(consent.client(0, "admin"), "admin:clients")
    tenant_view = await consent.http.get(
        f"{consent.url}/v1/admin/clients",
        params=query,
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert tenant_view.status_code == 200, tenant_view.text
    assert [c["client_id"] for c in tenant_view.json()["data"]] == ["tnt_demo_alpha-legacy"]

    operator = await consent.token(consent.operator(), "platform:clients")
    auth = {"Authorization": f"Bearer {operator}"}
    everyone = await consent.http.get(
        f"{consent.url}/v1/platform/clients", params=query, headers=auth
    )
    assert [c["client_id"] for c in everyone.json()["data"]] == [
        "tnt_demo_alpha-legacy",
        "tnt_demo_beta-legacy",
    ]
    assert everyone.json()["data"][0]["api_version"] == INITIAL_VERSION

    unknown = await consent.http.get(
        f"{consent.url}/v1/platform/clients", params={"api_version": "2020-01-01"}, headers=auth
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "query.api_version"
    refused = await consent.http.get(
        f"{consent.url}/v1/platform/clients",
        params=query,
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert refused.status_code == 403
