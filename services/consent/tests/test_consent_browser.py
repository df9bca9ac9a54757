"""A real headless Chromium walks the consent page (PAR + PKCE + authorization code)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from fastapi import FastAPI, Request
from joserfc import jwt
from joserfc.jwk import KeySet
from playwright.async_api import async_playwright

from clearway.consent import clients
from clearway.shared.testing.browser import CHROMIUM, CHROMIUM_FLAGS
from clearway.shared.testing.helpers import eventually, free_port, serve

pytestmark = pytest.mark.integration



@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            await b.close()


@pytest_asyncio.fixture
async def callback() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """The partner app's redirect endpoint: a real local server recording what it got."""
    received: list[dict[str, str]] = []
    app = FastAPI()

    @app.get("/callback")
    async def cb(request: Request) -> dict[str, str]:
        received.append(dict(request.query_params))
        return {"status": "received"}

    port = free_port()
    async with serve(app, port) as url:
        yield f"{url}/callback", received


@contextlib.asynccontextmanager
async def partner_app(consent, redirect_uri: str) -> AsyncIterator[dict[str, Any]]:
    secret = await clients.register_client(
        consent.svc,
        client_id="tnt_demo_alpha-shop",
        tenant="tnt_demo_alpha",
        name="Demo Shop",
        scopes=["payments:initiate", "payments:read", "consents:write", "consents:revoke"],
        redirect_uris=[redirect_uri],
    )
    yield {"client_id": "tnt_demo_alpha-shop", "client_secret": secret}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


async def push(consent, app: dict[str, Any], consent_id: str, redirect_uri: str, challenge: str):
    response = await consent.http.post(
        f"{consent.url}/oauth/par",
        data={
            "response_type": "code",
            "client_id": app["client_id"],
            "redirect_uri": redirect_uri,
            "scope": "payments:initiate payments:read",
            "state": "st-123",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "consent_id": consent_id,
        },
        auth=(app["client_id"], app["client_secret"]),
    )
    assert response.status_code == 201, response.text
    return response.json()["request_uri"]


async def sign_in_and_open(browser, consent, app, request_uri: str):
    page = await browser.new_page()
    await page.goto(
        f"{consent.url}/oauth/authorize?client_id={app['client_id']}&request_uri={request_uri}"
    )
    await page.fill("#username", "alice")
    await page.fill("#password", "demo-password")
    await page.click("#sign-in")
    await page.wait_for_selector("#approve")
    return page


async def test_the_user_approves_a_payment_in_a_real_browser_and_the_client_gets_a_bound_token(
    consent, resource, browser, callback
):
    redirect_uri, received = callback
    async with partner_app(consent, redirect_uri) as app:
        created = await consent.create_consent(app, subject="usr_alice")
        verifier, challenge = pkce()
        request_uri = await push(consent, app, created["id"], redirect_uri, challenge)

        page = await sign_in_and_open(browser, consent, app, request_uri)
        payment = await page.inner_text(".payment")
        assert "123.45 EUR" in payment and "Merchant A" in payment
        assert "DE02100100109307118603" in payment
        assert await page.inner_text("#reference") == created["reference"]
        await page.click("#approve")
        await page.wait_for_url(f"{redirect_uri}*")
        assert len(received) == 1
        got = received[0]
        assert got["state"] == "st-123" and got["iss"] == consent.settings.issuer

        form = {
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        auth = (app["client_id"], app["client_secret"])
        first = await consent.http.post(f"{consent.url}/oauth/token", data=form, auth=auth)
        assert first.status_code == 200, first.text
        token = first.json()["access_token"]
        claims = jwt.decode(token, KeySet.import_key_set(consent.svc.keys.jwks())).claims
        assert claims["consent_id"] == created["id"] and claims["sub"] == "usr_alice"
        assert claims["authorization_details"][0]["instructedAmount"] == {
            "amount": 12345,
            "currency": "EUR",
        }
        assert first.json()["authorization_details"] == claims["authorization_details"]

        reader = await consent.token(consent.client(0, "partner"), "consents:read")
        record = (
            await consent.http.get(
                f"{consent.url}/v1/consents/{created['id']}",
                headers={"Authorization": f"Bearer {reader}"},
            )
        ).json()
        assert record["status"] == "Authorised"
        assert [h["status"] for h in record["status_history"]] == [
            "AwaitingAuthorisation",
            "Authorised",
        ]
        assert record["evidence"]["subject"] == "usr_alice" and record["evidence"]["hash"]
        introspected = (
            await consent.http.post(
                f"{consent.url}/oauth/introspect", data={"token": token}, auth=auth
            )
        ).json()
        assert introspected["active"] and introspected["consent_id"] == created["id"]
        assert introspected["authorization_details"] == claims["authorization_details"]

        headers = {"Authorization": f"Bearer {token}"}
        ok = await consent.http.get(f"{resource.url}/v1/transfers", headers=headers)
        assert ok.status_code == 200 and ok.json()["consent_id"] == created["id"]

        # The code is single use; reusing it also revokes what it produced (RFC 6749 §4.1.2).
        again = await consent.http.post(f"{consent.url}/oauth/token", data=form, auth=auth)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

        async def refused() -> bool:
            r = await consent.http.get(f"{resource.url}/v1/transfers", headers=headers)
            return r.status_code == 401

        await eventually(refused, timeout=30)


async def test_the_user_rejects_and_later_revokes_from_the_page(consent, browser, callback):
    redirect_uri, received = callback
    async with partner_app(consent, redirect_uri) as app:
        rejected = await consent.create_consent(app, subject="usr_alice")
        _, challenge = pkce()
        page = await sign_in_and_open(
            browser, consent, app, await push(consent, app, rejected["id"], redirect_uri, challenge)
        )
        await page.click("#reject")
        await page.wait_for_url(f"{redirect_uri}*")
        assert received[-1]["error"] == "access_denied" and "code" not in received[-1]

        approved = await consent.create_consent(app, subject="usr_alice")
        request_uri = await push(consent, app, approved["id"], redirect_uri, challenge)
        await page.goto(
            f"{consent.url}/oauth/authorize?client_id={app['client_id']}&request_uri={request_uri}"
        )
        await page.click("#approve")  # still signed in
        await page.wait_for_url(f"{redirect_uri}*")
        assert "code" in received[-1]

        await page.goto(f"{consent.url}/consents")
        card = page.locator(f"[id='{approved['id']}']")
        assert await card.locator(".status").inner_text() == "Authorised"
        await card.locator("button.revoke").click()
        await page.wait_for_url(f"{consent.url}/consents")
        assert await card.locator(".status").inner_text() == "Revoked"
        assert await page.locator(f"[id='{rejected['id']}'] .status").inner_text() == "Rejected"
