"""The sign-in form's rate limits (docs/design.md §7): per username and per client
address, counted in Postgres (every process of the deployment counts together), 429
with Retry-After as problem+json, or the form again for a browser."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from clearway.consent import store_limits

pytestmark = pytest.mark.integration


@pytest.fixture
def consent_settings(consent_settings):
    return consent_settings.replace(
        sign_in_max_per_username=3, sign_in_max_per_address=6, sign_in_window_s=60
    )


@pytest_asyncio.fixture
async def login(consent):
    async def attempt(username: str, password: str = "wrong", **headers: str):
        return await consent.http.post(
            f"{consent.url}/login",
            data={"username": username, "password": password, "next": "/consents"},
            headers=headers,
        )

    return attempt


async def test_too_many_attempts_per_username_and_per_address_get_429_with_retry_after(
    consent, login
):
    for _ in range(3):
        assert (await login("alice")).status_code == 401
    refused = await login("alice", "demo-password")  # the right password, too late
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/too-many-sign-ins")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    page = await login("ALICE ", "demo-password", accept="text/html")  # same user, any case
    assert page.status_code == 429 and "Too many sign-in attempts" in page.text
    assert page.headers["content-type"].startswith("text/html") and page.headers["retry-after"]

    # the address has made 5 attempts: bob gets one more, then the address is refused
    assert (await login("bob", "demo-password")).status_code == 303
    over = await login("bob", "demo-password")
    assert over.status_code == 429 and over.json()["type"].endswith("/too-many-sign-ins")

    # the counters are rows in the deployment's database, keyed by blind indexes
    rows = await consent.svc.pool.fetch("SELECT key, attempts FROM sign_in_limits")
    assert sorted(r["attempts"] for r in rows) == [1, 5, 7]  # bob, alice, the address
    keys = [bytes(r["key"]) for r in rows]
    assert all(b"alice" not in k and b"127.0.0.1" not in k for k in keys)


async def test_a_successful_sign_in_starts_the_username_window_again_and_windows_end(
    consent, login
):
    for _ in range(2):
        assert (await login("alice")).status_code == 401
    assert (await login("alice", "demo-password")).status_code == 303
    for _ in range(3):  # three more failures are allowed again
        assert (await login("alice")).status_code == 401

    async with consent.svc.pool.acquire() as conn:
        key = b"k" * 32
        assert (await store_limits.count_attempt(conn, key, 0.5))[0] == 1
        assert (await store_limits.count_attempt(conn, key, 0.5))[0] == 2
        await asyncio.sleep(0.6)
        attempts, left = await store_limits.count_attempt(conn, key, 0.5)
        assert attempts == 1 and 0 < left <= 0.5  # a new window
        await asyncio.sleep(0.6)
        assert await store_limits.purge(conn, 0.5) >= 1
