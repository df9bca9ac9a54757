"""Issue 12 item 6 at the consent service: one redemption per code under concurrency,
and hostile non-ASCII input answered with 4xx, never a 500."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from typing import Any

import pytest

from clearway.consent import clients as consent_clients
from clearway.consent import handlers

from .conftest import read_events

REDIRECT = "http://127.0.0.1:8765/callback"


async def _code(consent, partner: dict[str, Any], challenge: str | None = None):
    """(code, verifier) of a consent the user approved."""
    created = await consent.create_consent(partner, subject="usr_alice")
    verifier = secrets.token_urlsafe(48)
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    par = {
        "client_id": partner["client_id"],
        "redirect_uri": REDIRECT,
        "code_challenge": challenge or digest.rstrip(b"=").decode(),
        "scopes": ["payments:initiate", "payments:read"],
        "resource": [],
        "consent_id": created["id"],
    }
    code = await handlers.decide(consent.svc, par, "usr_alice", created["tenant"], True, "t")
    return code, verifier


async def _redeem(consent, partner, code: str, verifier: str):
    return await consent.http.post(
        f"{consent.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(partner["client_id"], partner["client_secret"]),
    )


async def test_a_code_redeemed_twice_concurrently_issues_one_token_and_it_ends_revoked(consent):
    partner = consent.client(0, "partner")
    auth = (partner["client_id"], partner["client_secret"])
    for _ in range(3):  # a race: several rounds, each must hold
        code, verifier = await _code(consent, partner)
        first, second = await asyncio.gather(
            _redeem(consent, partner, code, verifier), _redeem(consent, partner, code, verifier)
        )
        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [200, 400], (first.text, second.text)
        winner, loser = (first, second) if first.status_code == 200 else (second, first)
        assert loser.json()["error"] == "invalid_grant"
        token = winner.json()["access_token"]
        introspected = await consent.http.post(
            f"{consent.url}/oauth/introspect", data={"token": token}, auth=auth
        )
        assert introspected.json() == {"active": False}  # RFC 6749 §4.1.2
        async with consent.svc.pool.acquire() as conn:
            issued = await conn.fetchval(
                "SELECT count(*) FROM issued_tokens WHERE code_hash = $1",
                hashlib.sha256(code.encode()).hexdigest(),
            )
        assert issued == 1


async def test_non_ascii_values_at_the_token_endpoint_are_4xx_not_500(consent):
    partner = consent.client(0, "partner")
    auth = (partner["client_id"], partner["client_secret"])
    url = f"{consent.url}/oauth/token"
    code, verifier = await _code(consent, partner, challenge="é" * 43)
    cases = [
        (
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth,
        ),
        ({"grant_type": "authorization_code", "code": "ćode-ü", "code_verifier": "ü" * 50}, auth),
        ({"grant_type": "client_credentials", "scope": "paymënts:read"}, auth),
        ({"grant_type": "client_credentials"}, (partner["client_id"], "sécret-ü")),
        ({"grant_type": "client_credentials"}, ("clïent-ü", "sécret")),
        ({"grant_type": "client_credentials", "client_id": "ü", "client_secret": "€"}, None),
    ]
    for form, credentials in cases:
        response = await consent.http.post(url, data=form, auth=credentials)
        assert 400 <= response.status_code < 500, (form, response.status_code, response.text)


async def test_non_ascii_values_on_the_consent_pages_are_4xx_not_500(consent):
    http, url = consent.http, consent.url
    forged = "cw_session=usr_alice|tnt_demo_alpha|9999999999|é".encode()
    response = await http.get(f"{url}/consents", headers={"Cookie": forged})
    assert response.status_code < 500 and "Sign in" in response.text  # not a session
    login = await http.post(
        f"{url}/login",
        data={"username": "alice", "password": "demo-password", "next": "/consents"},
        follow_redirects=False,
    )
    assert login.status_code == 303
    session = {"Cookie": f"cw_session={login.cookies['cw_session']}"}
    for path, form in [
        (
            "/oauth/authorize",
            {"request_uri": "ü", "client_id": "ü", "csrf": "ü" * 64, "decision": "approve"},
        ),
        ("/consents/cns_ü/revoke", {"csrf": "ü" * 64}),
        ("/login", {"username": "älice", "password": "pässword"}),
    ]:
        response = await http.post(f"{url}{path}", data=form, headers=session)
        assert 400 <= response.status_code < 500, (path, response.status_code)


# --- issue 12 item 5: admin scopes split by reach -----------------------------------------


async def _post(consent, path: str, token: str, **body: Any):
    return await consent.http.post(
        f"{consent.url}{path}",
        json={"reason": "incident 42", **body},
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_a_tenant_admin_cannot_rotate_platform_keys_or_touch_another_tenants_clients(
    consent,
):
    admin = consent.client(0, "admin")
    # platform scopes are never granted to a tenant's client
    refused = await consent.token_response(admin, scope="platform:keys")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    token = await consent.token(admin, "admin:clients admin:consents")
    rotation = await _post(consent, "/v1/platform/keys/rotation", token)
    assert rotation.status_code == 403
    assert rotation.json()["missing_scopes"] == ["platform:keys"]

    other = consent.client(1, "partner")["client_id"]
    for path in (f"/v1/admin/clients/{other}/disable", f"/v1/admin/clients/{other}/secret"):
        response = await _post(consent, path, token)
        assert response.status_code == 403, response.text
    unknown = await _post(consent, "/v1/admin/clients/tnt_nobody-partner/disable", token)
    assert unknown.status_code == 403 and unknown.json() == {
        **response.json(),
        "detail": "tnt_nobody-partner is not yours",
        "instance": unknown.json()["instance"],
        "correlation_id": unknown.json()["correlation_id"],
    }  # an unknown client and another tenant's look the same
    assert (await consent.token_response(consent.client(1, "partner"))).status_code == 200
    with pytest.raises(ValueError, match="platform scopes"):
        await consent_clients.register_client(
            consent.svc, client_id="x", tenant="tnt_demo_alpha", name="x", scopes=["platform:keys"]
        )


async def test_platform_key_rotation_is_reasoned_throttled_and_audited_under_the_platform(
    consent,
):
    token = await consent.token(consent.operator(), "platform:keys platform:clients")
    no_reason = await consent.http.post(
        f"{consent.url}/v1/platform/keys/rotation",
        json={},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert no_reason.status_code == 422
    first = await _post(consent, "/v1/platform/keys/rotation", token)
    assert first.status_code == 200, first.text
    again = await _post(consent, "/v1/platform/keys/rotation", token)
    assert again.status_code == 429 and int(again.headers["Retry-After"]) >= 1
    # an operator reaches any tenant's client; the action lands in that tenant's view
    beta = consent.client(1, "webhooks")["client_id"]
    disabled = await _post(consent, f"/v1/platform/clients/{beta}/disable", token)
    assert disabled.status_code == 200, disabled.text

    def actions(seen):
        return {e.data["action"]: e for e in seen if e.type == "consent.admin_action"}

    events = await read_events(
        consent.settings.kafka,
        consent.settings.topic,
        lambda seen: {"rotate_keys", "disable_client"} <= set(actions(seen)),
    )
    assert actions(events)["rotate_keys"].tenant == "tnt_platform"
    assert actions(events)["disable_client"].tenant == "tnt_demo_beta"
