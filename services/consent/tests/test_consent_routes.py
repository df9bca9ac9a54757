"""Every route declares a scope: without it 403 naming it, with it the route answers;
expired, unsigned, wrong-audience and wrong-typ tokens get 401."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid

import pytest

from clearway.consent.scopes import BY_NAME
from clearway.shared.auth import route_scopes

from .conftest import payment_details

pytestmark = pytest.mark.integration

#: Routes that are public by nature (OAuth endpoints authenticate the client in the
#: request, the consent page uses the browser's login session, probes and discovery).
PUBLIC = {
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/oauth/token"),
    ("POST", "/oauth/par"),
    ("POST", "/oauth/introspect"),
    ("POST", "/oauth/revoke"),
    ("GET", "/oauth/authorize"),
    ("POST", "/oauth/authorize"),
    ("POST", "/login"),
    ("GET", "/consents"),
    ("POST", "/consents/{consent_id}/revoke"),
}


def claims(consent, scopes, **over):
    now = int(time.time())
    base = {
        "iss": consent.settings.issuer,
        "sub": "tnt_demo_alpha-partner",
        "aud": "clearway-consent",
        "client_id": "tnt_demo_alpha-partner",
        "scope": " ".join(sorted(scopes)),
        "tenant": "tnt_demo_alpha",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": f"at_{uuid.uuid4().hex}",
    }
    return {**base, **over}


def signed(consent, scopes, typ="at+jwt", **over):
    # signed by the service's current key in the HSM, as its own tokens are
    return consent.svc.keys.sign(claims(consent, scopes, **over), typ=typ)


def unsigned(consent, scopes):
    def b64(v):
        return base64.urlsafe_b64encode(json.dumps(v).encode()).rstrip(b"=").decode()

    header = {"alg": "none", "typ": "at+jwt", "kid": consent.svc.keys.signer().kid}
    return f"{b64(header)}.{b64(claims(consent, scopes))}."


async def call(consent, method, path, token):
    url = consent.url + re.sub(r"\{[^}]+\}", "cns_doesnotexist", path)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return await consent.http.request(
        method, url, json=body, headers={"Authorization": f"Bearer {token}"}
    )


async def test_every_route_is_public_by_nature_or_declares_a_known_scope(consent):
    scopes = route_scopes(consent.app)
    for route, needed in scopes.items():
        if route in PUBLIC:
            assert not needed, route
        else:
            assert needed and needed <= set(BY_NAME), route


async def test_each_scoped_route_refuses_missing_scope_and_bad_tokens_and_passes_with_its_scope(
    consent,
):
    everything = set(BY_NAME)
    for (method, path), needed in route_scopes(consent.app).items():
        if not needed:
            continue
        lacking = await call(consent, method, path, signed(consent, everything - needed))
        assert lacking.status_code == 403, (method, path)
        assert set(lacking.json()["missing_scopes"]) == needed

        passing = await call(consent, method, path, signed(consent, needed))
        # Past authorisation the route answers; an empty body or an unknown id is
        # the client's fault (4xx), never a crash.
        assert passing.status_code < 500, (method, path, passing.status_code, passing.text)
        assert passing.status_code not in (401, 403), (method, path, passing.text)

        for bad in (
            signed(consent, needed, exp=int(time.time()) - 120, iat=int(time.time()) - 500),
            unsigned(consent, needed),
            signed(consent, needed, aud="clearway-transfer"),
            signed(consent, needed, typ="JWT"),
        ):
            refused = await call(consent, method, path, bad)
            assert refused.status_code == 401, (method, path)
            assert refused.headers["content-type"].startswith("application/problem+json")


async def test_a_token_naming_an_unregistered_client_creates_nothing_and_is_a_403(consent):
    # a token of this issuer for a client it has no record of (deleted since, or seeded
    # in another deployment): a problem, never the foreign-key error's 500
    now = int(time.time())
    token = consent.svc.keys.sign(
        {
            "iss": consent.svc.settings.issuer,
            "sub": "usr_ghost",
            "aud": "clearway-consent",
            "client_id": "cli_not_registered",
            "scope": "consents:write",
            "tenant": "tnt_demo_alpha",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": f"at_{uuid.uuid4().hex}",
        },
        typ="at+jwt",
    )
    r = await consent.http.post(
        f"{consent.url}/v1/consents",
        json={
            "purpose": "Pay your electricity bill",
            "authorization_details": [payment_details()],
            "scopes": ["payments:initiate"],
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/unknown-client")
    async with consent.svc.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM consents") == 0
