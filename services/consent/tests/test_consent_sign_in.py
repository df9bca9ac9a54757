"""First-party sign-in (docs/design.md §7): the console asks for the signed-in user's own
token with PAR + PKCE and no consent; the token carries the user's tenant and only the
scopes of the user's role."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from clearway.consent.scopes import OPERATOR_SIGN_IN, PARTNER_SIGN_IN, PLATFORM_TENANT

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:8007/auth/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def sign_in(consent, username: str, scope: str) -> dict:
    """Push, sign in at the consent page, follow it: the code (or the error) it answers."""
    console = next(c for c in consent.clients if c["client_id"] == "clearway-console")
    auth = (console["client_id"], console["client_secret"])
    verifier, challenge = pkce()
    pushed = await consent.http.post(
        f"{consent.url}/oauth/par",
        data={
            "response_type": "code",
            "client_id": console["client_id"],
            "redirect_uri": REDIRECT,
            "scope": scope,
            "state": "st-1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        auth=auth,
    )
    assert pushed.status_code == 201, pushed.text
    login = await consent.http.post(
        f"{consent.url}/login",
        data={"username": username, "password": "demo-password", "next": "/consents"},
    )
    assert login.status_code == 303
    authorize = f"{consent.url}/oauth/authorize"
    params = {"client_id": console["client_id"], "request_uri": pushed.json()["request_uri"]}
    async with httpx.AsyncClient(cookies=login.cookies) as browser:
        answer = await browser.get(authorize, params=params)
        assert answer.status_code == 303, answer.text
        # the request is used up: a second visit gets no second code
        again = await browser.get(authorize, params=params)
        assert again.status_code == 400
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == ["st-1"] and query["iss"] == [consent.settings.issuer]
    if "code" not in query:
        return {"error": query["error"][0]}
    return {"code": query["code"][0], "verifier": verifier, "auth": auth}


async def redeem(consent, got: dict, verifier: str | None = None):
    form = {
        "grant_type": "authorization_code",
        "code": got["code"],
        "redirect_uri": REDIRECT,
        "code_verifier": verifier or got["verifier"],
    }
    return await consent.http.post(f"{consent.url}/oauth/token", data=form, auth=got["auth"])


async def claims_of(consent, got: dict) -> dict:
    r = await redeem(consent, got)
    assert r.status_code == 200, r.text
    keys = KeySet.import_key_set(consent.svc.keys.jwks())
    return jwt.decode(r.json()["access_token"], keys).claims


async def test_a_sign_in_code_needs_its_pkce_verifier_and_is_spent_by_any_attempt(consent):
    got = await sign_in(consent, "alice", "webhooks:read")
    wrong = await redeem(consent, got, verifier="x" * 43)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    spent = await redeem(consent, got)
    assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"


async def test_each_role_gets_only_its_own_scopes_and_tenant(consent):
    everything = " ".join(sorted(OPERATOR_SIGN_IN | PARTNER_SIGN_IN))
    for username, tenant, role in (
        ("alice", "tnt_demo_alpha", PARTNER_SIGN_IN),
        ("olga", PLATFORM_TENANT, OPERATOR_SIGN_IN),
    ):
        got = await sign_in(consent, username, everything)
        claims = await claims_of(consent, got)
        assert claims["tenant"] == tenant and claims["sub"] == f"usr_{username}"
        assert set(claims["scope"].split()) == role
        assert claims["client_id"] == "clearway-console" and "consent_id" not in claims


async def test_an_operator_only_request_gives_a_partner_no_code(consent):
    got = await sign_in(consent, "alice", "platform:audit")
    assert got == {"error": "access_denied"}


async def test_only_a_first_party_console_may_push_without_a_consent(consent):
    partner = consent.client(0, "partner")
    _, challenge = pkce()
    r = await consent.http.post(
        f"{consent.url}/oauth/par",
        data={
            "response_type": "code",
            "client_id": partner["client_id"],
            "redirect_uri": "http://127.0.0.1:8765/callback",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        auth=(partner["client_id"], partner["client_secret"]),
    )
    assert r.status_code == 400 and "consent_id is required" in r.json()["error_description"]
