"""Client credentials, discovery, JWKS, introspection and revocation, seen from outside."""

from __future__ import annotations

import time
import uuid

import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from clearway.consent import clients
from clearway.shared.testing.helpers import eventually

from .conftest import read_events

pytestmark = pytest.mark.integration


async def test_an_independent_oauth_client_gets_a_token_that_an_independent_jose_library_validates(
    consent,
):
    partner = consent.client(0, "partner")
    async with AsyncOAuth2Client(
        client_id=partner["client_id"],
        client_secret=partner["client_secret"],
        scope="payments:initiate payments:read",
        token_endpoint_auth_method="client_secret_basic",
    ) as oauth:
        token = await oauth.fetch_token(
            f"{consent.url}/oauth/token", grant_type="client_credentials"
        )
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] <= 300
    jwks = (await consent.http.get(f"{consent.url}/.well-known/jwks.json")).json()
    decoded = jwt.decode(token["access_token"], KeySet.import_key_set(jwks), algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.header["kid"] in {k["kid"] for k in jwks["keys"]}
    claims = decoded.claims
    assert claims["iss"] == consent.settings.issuer
    assert claims["aud"] == "clearway-transfer"
    assert claims["client_id"] == partner["client_id"] == claims["sub"]
    assert claims["tenant"] == "tnt_demo_alpha"
    assert set(claims["scope"].split()) == {"payments:initiate", "payments:read"}
    assert claims["exp"] - claims["iat"] == 300
    assert {"nbf", "jti"} <= set(claims)


async def test_discovery_names_every_endpoint_and_pkce_s256_only(consent):
    meta = (await consent.http.get(f"{consent.url}/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == consent.settings.issuer
    assert meta["jwks_uri"] == f"{consent.settings.issuer}/.well-known/jwks.json"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["require_pushed_authorization_requests"] is True
    for name in ("token", "introspection", "revocation", "pushed_authorization_request"):
        assert meta[f"{name}_endpoint"].startswith(consent.settings.issuer)
    assert "payments:initiate" in meta["scopes_supported"]


async def test_malformed_token_requests_get_rfc_6749_error_codes(consent):
    partner = consent.client(0, "partner")
    url = f"{consent.url}/oauth/token"
    auth = (partner["client_id"], partner["client_secret"])
    cases = [
        ({}, auth, 400, "invalid_request"),
        ({"grant_type": "password"}, auth, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "scope": "audit:read"}, auth, 400, "invalid_scope"),
        ({"grant_type": "client_credentials", "scope": "nope:x"}, auth, 400, "invalid_scope"),
        (
            {"grant_type": "client_credentials"},
            (partner["client_id"], "wrong"),
            401,
            "invalid_client",
        ),
        ({"grant_type": "authorization_code", "code": "nope"}, auth, 400, "invalid_grant"),
    ]
    for form, credentials, status, error in cases:
        response = await consent.http.post(url, data=form, auth=credentials)
        assert (response.status_code, response.json()["error"]) == (status, error), form


async def test_a_resource_parameter_narrows_the_audience(consent):
    partner = consent.client(0, "partner")
    token = await consent.token(
        partner, "payments:read consents:read", resource="https://api/clearway-consent"
    )
    claims = jwt.decode(token, KeySet.import_key_set(consent.svc.keys.jwks())).claims
    assert claims["aud"] == "clearway-consent"


def _from(address: str) -> dict[str, str]:
    # uvicorn applies X-Forwarded-For from its trusted proxies (FORWARDED_ALLOW_IPS,
    # 127.0.0.1 by default): the consent app sees this as the caller's address.
    return {"X-Forwarded-For": address}


async def test_failures_from_one_address_never_stop_the_client_from_another(consent):
    auditor = consent.client(0, "auditor")
    url = f"{consent.url}/oauth/token"
    form = {"grant_type": "client_credentials"}
    for _ in range(100):
        r = await consent.http.post(
            url, data=form, auth=(auditor["client_id"], "guess"), headers=_from("203.0.113.7")
        )
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    real = await consent.http.post(
        url,
        data=form,
        auth=(auditor["client_id"], auditor["client_secret"]),
        headers=_from("198.51.100.9"),
    )
    assert real.status_code == 200, real.text
    # the guessing address is throttled, even with the right secret
    throttled = await consent.http.post(
        url,
        data=form,
        auth=(auditor["client_id"], auditor["client_secret"]),
        headers=_from("203.0.113.7"),
    )
    assert throttled.status_code == 401


async def test_no_caller_learns_whether_a_client_exists_is_disabled_or_throttled(consent):
    url = f"{consent.url}/oauth/token"
    form = {"grant_type": "client_credentials"}
    partner, webhooks = consent.client(1, "partner"), consent.client(1, "webhooks")
    admin = await consent.token(consent.client(1, "admin"), "admin:clients")
    r = await consent.http.post(
        f"{consent.url}/v1/admin/clients/{webhooks['client_id']}/disable",
        json={"reason": "offboarded"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 200
    for _ in range(6):  # throttle the partner from this address (3 failures are free)
        await consent.http.post(
            url, data=form, auth=(partner["client_id"], "x"), headers=_from("192.0.2.1")
        )
    answers = [
        await consent.http.post(url, data=form, auth=auth, headers=_from("192.0.2.1"))
        for auth in [
            ("tnt_demo_beta-nobody", "x"),  # no such client
            (partner["client_id"], "wrong"),  # wrong secret (and throttled)
            (partner["client_id"], partner["client_secret"]),  # throttled
            (webhooks["client_id"], webhooks["client_secret"]),  # disabled
        ]
    ]
    assert {(a.status_code, a.text) for a in answers} == {(401, answers[0].text)}


async def test_a_distributed_guessing_pattern_alerts_and_guards_without_locking(consent):
    auditor = consent.client(0, "auditor")
    url = f"{consent.url}/oauth/token"
    form = {"grant_type": "client_credentials"}
    good = (auditor["client_id"], auditor["client_secret"])
    known = await consent.http.post(url, data=form, auth=good, headers=_from("198.51.100.9"))
    assert known.status_code == 200
    for i in range(consent.settings.auth_anomaly_addresses):
        r = await consent.http.post(
            url, data=form, auth=(auditor["client_id"], "guess"), headers=_from(f"10.9.0.{i}")
        )
        assert r.status_code == 401
    events = await read_events(
        consent.settings.platform.kafka,
        consent.settings.topic,
        lambda seen: any(e.type == "client.auth_anomaly" for e in seen),
    )
    anomaly = next(e for e in events if e.type == "client.auth_anomaly")
    assert anomaly.data["client_id"] == auditor["client_id"]
    assert anomaly.data["addresses"] == consent.settings.auth_anomaly_addresses
    assert anomaly.tenant == "tnt_demo_alpha"
    assert not any(e.type == "client.locked" for e in events)
    # guarded, not locked: the client's known address still gets tokens, a new one not
    again = await consent.http.post(url, data=form, auth=good, headers=_from("198.51.100.9"))
    assert again.status_code == 200
    stranger = await consent.http.post(url, data=form, auth=good, headers=_from("192.0.2.77"))
    assert stranger.status_code == 401


async def test_introspection_is_active_until_the_client_revokes_its_token(consent, resource):
    partner = consent.client(0, "partner")
    token = await consent.token(partner, "payments:read")
    auth = (partner["client_id"], partner["client_secret"])
    introspect = f"{consent.url}/oauth/introspect"
    active = (await consent.http.post(introspect, data={"token": token}, auth=auth)).json()
    assert active["active"] is True and active["scope"] == "payments:read"
    # another tenant's client learns nothing about it
    other = consent.client(1, "partner")
    foreign = await consent.http.post(
        introspect, data={"token": token}, auth=(other["client_id"], other["client_secret"])
    )
    assert foreign.json() == {"active": False}

    headers = {"Authorization": f"Bearer {token}"}
    assert (
        await consent.http.get(f"{resource.url}/v1/transfers", headers=headers)
    ).status_code == 200
    revoked = await consent.http.post(
        f"{consent.url}/oauth/revoke", data={"token": token}, auth=auth
    )
    assert revoked.status_code == 200
    after = (await consent.http.post(introspect, data={"token": token}, auth=auth)).json()
    assert after == {"active": False}

    async def refused() -> bool:
        r = await consent.http.get(f"{resource.url}/v1/transfers", headers=headers)
        return r.status_code == 401

    await eventually(refused, timeout=30)


async def test_a_private_key_jwt_client_authenticates_with_a_single_use_assertion(consent):
    key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    await clients.register_client(
        consent.svc,
        client_id="tnt_demo_alpha-signer",
        tenant="tnt_demo_alpha",
        name="Key-holding service",
        scopes=["payments:read"],
        jwks={"keys": [{**key.as_dict(private=False), "alg": "ES256", "use": "sig"}]},
    )
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "ES256", "kid": key.kid},
        {
            "iss": "tnt_demo_alpha-signer",
            "sub": "tnt_demo_alpha-signer",
            "aud": f"{consent.settings.issuer}/oauth/token",
            "iat": now,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        },
        key,
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    first = await consent.http.post(f"{consent.url}/oauth/token", data=form)
    assert first.status_code == 200, first.text
    assert first.json()["scope"] == "payments:read"
    replayed = await consent.http.post(f"{consent.url}/oauth/token", data=form)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"
