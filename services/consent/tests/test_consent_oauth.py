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


async def test_repeated_failed_authentication_locks_the_client_until_an_operator_rotates(
    consent,
):
    auditor = consent.client(0, "auditor")
    wrong = {**auditor, "client_secret": "guess"}
    for _ in range(5):
        assert (await consent.token_response(wrong)).status_code == 401
    locked = await consent.token_response(auditor)
    assert locked.status_code == 401 and "locked" in locked.json()["error_description"]
    events = await read_events(
        consent.settings.platform.kafka,
        consent.settings.topic,
        lambda seen: any(e.type == "client.locked" for e in seen),
    )
    locked_event = next(e for e in events if e.type == "client.locked")
    assert locked_event.data["client_id"] == auditor["client_id"]
    assert locked_event.data["failed_attempts"] == 5
    admin = await consent.token(consent.client(0, "admin"), "admin:clients")
    response = await consent.http.post(
        f"{consent.url}/v1/admin/clients/{auditor['client_id']}/secret",
        json={"reason": "locked after failed logins"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert response.status_code == 200, response.text
    fresh = {**auditor, "client_secret": response.json()["client_secret"]}
    assert (await consent.token_response(fresh)).status_code == 200
    # a locked client's old secret does not get an overlap window
    assert (await consent.token_response(auditor)).status_code == 401


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
