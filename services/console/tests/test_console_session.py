"""The console's sign-in, session, CSRF and security headers (docs/console.md, ADR 0045)."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import parse_qs, urlsplit

import pytest

from clearway.console.sessions import COOKIE

pytestmark = pytest.mark.integration


async def test_a_page_without_a_session_goes_through_sign_in_and_every_answer_is_hardened(
    console,
):
    r = await console.http.get("/flows?q=corr_1")
    assert r.status_code == 303
    assert r.headers["location"] == "/auth/sign-in?next=%2Fflows%3Fq%3Dcorr_1"
    csp = r.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "form-action 'self'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    css = await console.http.get("/static/console.css")
    assert css.status_code == 200 and css.headers["cache-control"].startswith("public")

    start = await console.http.get("/auth/sign-in", params={"next": "https://evil.example/"})
    assert start.status_code == 303
    target = urlsplit(start.headers["location"])
    assert f"{target.scheme}://{target.netloc}" == console.issuer.url
    assert parse_qs(target.query)["client_id"] == ["clearway-console"]
    pushed = console.issuer.pushed[-1]
    assert pushed["code_challenge_method"] == "S256" and len(pushed["code_challenge"]) == 43
    assert pushed["redirect_uri"] == f"{console.url}/auth/callback"
    assert "platform:audit" in pushed["scope"].split()
    cookie = start.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    # an absolute next is never followed (no open redirect)
    done = await console.http.get(
        "/auth/callback",
        params={"state": pushed["state"], "code": "c", "iss": console.issuer.url},
    )
    assert done.status_code == 303 and done.headers["location"] == "/"


async def test_the_callback_checks_state_and_issuer_and_signs_in_under_a_fresh_session_id(
    console,
):
    await console.http.get("/auth/sign-in", params={"next": "/webhooks"})
    pending = console.http.cookies[COOKIE]
    state = console.issuer.pushed[-1]["state"]
    wrong = await console.http.get(
        "/auth/callback", params={"state": "x" + state, "code": "c", "iss": console.issuer.url}
    )
    assert wrong.status_code == 400 and console.issuer.redeemed == []
    mixed_up = await console.http.get(
        "/auth/callback", params={"state": state, "code": "c", "iss": "https://other.example"}
    )
    assert mixed_up.status_code == 400 and console.issuer.redeemed == []
    # the mixed-up answer ended that sign-in: the same state is no good any more
    again = await console.http.get(
        "/auth/callback", params={"state": state, "code": "c", "iss": console.issuer.url}
    )
    assert again.status_code == 400

    r = await console.sign_in("/")
    assert r.status_code == 303 and r.headers["location"] == "/"
    redeemed = console.issuer.redeemed[-1]
    assert redeemed["grant_type"] == "authorization_code" and len(redeemed["code_verifier"]) >= 43
    assert console.http.cookies[COOKIE] != pending  # no session fixation
    home = await console.http.get("/")
    assert home.status_code == 200
    assert "usr_alice" in home.text and "tnt_demo_alpha" in home.text
    assert "access_token" not in home.text and "sig" not in console.http.cookies[COOKIE]
    # a partner's session never opens operator pages
    assert (await console.http.get("/operator")).status_code == 403


async def test_forms_need_the_sessions_csrf_token_and_the_consoles_origin(console):
    await console.sign_in()
    home = await console.http.get("/")
    csrf = home.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    forged = await console.http.post("/auth/sign-out", data={"csrf": "nope"})
    assert forged.status_code == 403
    elsewhere = await console.http.post(
        "/auth/sign-out", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert elsewhere.status_code == 403
    session = console.http.cookies[COOKIE]
    out = await console.http.post(
        "/auth/sign-out", data={"csrf": csrf}, headers={"Origin": console.url}
    )
    assert out.status_code == 303 and out.headers["location"] == "/signed-out"
    assert len(console.issuer.revoked) == 1  # the token is revoked at the issuer
    console.http.cookies.clear()
    console.http.cookies.set(COOKIE, session)  # the old cookie, replayed
    r = await console.http.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/sign-in")
    late = await console.http.post("/auth/sign-out", data={"csrf": csrf})
    assert late.status_code == 401


async def test_the_session_ends_when_the_users_token_expires(console):
    console.issuer.token_ttl_s = 1.0
    await console.sign_in()
    assert (await console.http.get("/")).status_code == 200
    await asyncio.sleep(1.5)
    r = await console.http.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/sign-in")


async def test_the_rotate_form_checks_csrf_reason_and_grace_and_never_echoes_the_secret(console):
    await console.sign_in()
    home = await console.http.get("/")
    csrf = home.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    secret = "whsec_" + base64.b64encode(b"\x13\x37" * 16).decode()
    form = {"secret": secret, "grace_seconds": "86400", "reason": "yearly", "csrf": csrf}
    path = "/webhooks/endpoints/ep_1/secret"
    forged = await console.http.post(path, data={**form, "csrf": "x"})
    assert forged.status_code == 403
    for bad in ({"reason": ""}, {"grace_seconds": "9" * 5000}, {"grace_seconds": "60"}):
        r = await console.http.post(path, data={**form, **bad})
        assert r.status_code == 422, bad
        assert secret.removeprefix("whsec_") not in r.text
    # the webhooks service is down here: the secret reached no page either way
    down = await console.http.post(path, data=form)
    assert down.status_code == 502 and secret.removeprefix("whsec_") not in down.text
