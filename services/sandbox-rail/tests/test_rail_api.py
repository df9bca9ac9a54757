"""The sandbox rail: one charge per reference, a settlement report, switchable faults."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest

from clearway.shared.testing.helpers import free_port, kafka_env, serve
from clearway.shared.testing.issuer import TestIssuer
from clearway.shared.testing.token_endpoint import TokenEndpoint

from .conftest import RAIL_SCOPES, service_token

pytestmark = pytest.mark.integration


def charge(ref: str, amount: int = 500, source: str = "acct_a") -> dict:
    return {
        "reference": ref,
        "amount": amount,
        "currency": "EUR",
        "source": source,
        "destination": "acct_b",
    }


async def test_a_repeated_reference_returns_the_existing_charge(rail):
    first = await rail.post("/v1/charges", json=charge("CWREF1"))
    again = await rail.post("/v1/charges", json=charge("CWREF1", amount=999))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert first.json()["status"] == "settled"
    assert (await rail.get("/v1/charges/CWREF1")).json() == first.json()
    assert (await rail.get("/v1/charges/CWNOPE")).status_code == 404


async def test_a_declined_source_makes_a_declined_charge_left_out_of_the_report(rail):
    assert (await rail.post("/v1/charges", json=charge("CWNSF", source="acct_nsf9"))).json()[
        "status"
    ] == "declined"
    for i in range(5):
        await rail.post("/v1/charges", json=charge(f"CWR{i}"))
    page1 = (await rail.get("/v1/settlement-report", params={"limit": 3})).json()
    page2 = (
        await rail.get("/v1/settlement-report", params={"limit": 3, "after": page1["next_after"]})
    ).json()
    refs = [c["reference"] for c in page1["data"] + page2["data"]]
    assert refs == [f"CWR{i}" for i in range(5)]


async def test_a_reference_outside_the_sepa_character_set_is_refused(rail):
    r = await rail.post("/v1/charges", json=charge("CW_REF#1"))
    assert r.status_code == 422 and "reference" in r.json()["detail"]


async def test_injected_errors_answer_503_without_charging(rail):
    await rail.put("/v1/faults", json={"error_rate": 1.0})
    r = await rail.post("/v1/charges", json=charge("CWERR"))
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert (await rail.get("/v1/charges/CWERR")).status_code == 404


async def test_a_lost_response_drops_the_connection_after_the_charge_is_made(rail):
    await rail.put("/v1/faults", json={"lose_response_rate": 1.0, "latency_ms": 20})
    with pytest.raises(httpx.RemoteProtocolError):
        await rail.post("/v1/charges", json=charge("CWLOST"))
    await rail.put("/v1/faults", json={})
    assert (await rail.get("/v1/charges/CWLOST")).json()["status"] == "settled"


async def test_a_crash_fault_kills_the_rail_process_after_charging(platform, issuer):
    port = free_port()
    async with serve(TokenEndpoint(issuer).app()) as issuer_url:
        env = {
            **os.environ,
            **kafka_env(platform),  # its revocation feed and events topic
            "CLEARWAY_TOPIC_PREFIX": platform.topic_prefix,
            "CLEARWAY_DATABASE_URL": platform.database_url,
            "CLEARWAY_RAIL_PORT": str(port),
            "CLEARWAY_OAUTH_ISSUER": issuer.issuer,
            "CLEARWAY_OAUTH_JWKS_URL": f"{issuer_url}/.well-known/jwks.json",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "clearway.rail"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                timeout=10,
                headers={"Authorization": f"Bearer {service_token(issuer)}"},
            ) as c:
                for _ in range(600):
                    try:
                        if (await c.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                assert (await c.put("/v1/faults", json={"crash_rate": 1.0})).status_code == 200
                with pytest.raises(httpx.TransportError):
                    await c.post("/v1/charges", json=charge("CWCRASH"))
            for _ in range(100):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            assert proc.returncode == 17
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    import asyncpg

    conn = await asyncpg.connect(platform.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM rail.charges") == 1
    finally:
        await conn.close()


async def test_a_charge_without_a_valid_service_token_is_refused_with_401(rail, issuer):
    impostor = TestIssuer(issuer.issuer)  # same name, keys the rail never saw
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {service_token(issuer, ttl_s=-120)}"},
        {"Authorization": f"Bearer {service_token(issuer, audience='clearway-transfer')}"},
        {"Authorization": f"Bearer {service_token(impostor)}"},
    ):
        r = await rail.post("/v1/charges", json=charge("CWNOAUTH"), headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert (await rail.get("/v1/charges/CWNOAUTH")).status_code == 404, "nothing was charged"


async def test_a_service_token_lacking_the_scope_is_refused_with_403(rail, issuer):
    others = [s for s in RAIL_SCOPES if s != "rail:charges"]
    headers = {"Authorization": f"Bearer {service_token(issuer, scopes=others)}"}
    r = await rail.post("/v1/charges", json=charge("CWNOSCOPE"), headers=headers)
    assert r.status_code == 403, r.text
    assert r.json()["missing_scopes"] == ["rail:charges"]
    assert 'scope="rail:charges"' in r.headers["www-authenticate"]
    # each route wants its own scope: charging does not open the settlement report
    charging = {"Authorization": f"Bearer {service_token(issuer, scopes=['rail:charges'])}"}
    report = await rail.get("/v1/settlement-report", headers=charging)
    assert report.status_code == 403 and report.json()["missing_scopes"] == ["rail:settlements"]
    assert (await rail.put("/v1/faults", json={}, headers=charging)).status_code == 403
    ok = await rail.post("/v1/charges", json=charge("CWSCOPED"), headers=charging)
    assert ok.status_code == 201, ok.text


async def test_a_card_charge_keeps_only_the_cards_brand_and_last_four(rail, platform):
    card = {"number": "4111111111111111", "exp_month": 12, "exp_year": 2099, "brand": "visa"}
    body = {**charge("CWCARD1", source="tok_" + "a" * 24), "card": card}
    r = await rail.post("/v1/charges", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["card"] == {"brand": "visa", "last4": "1111"}
    assert r.json()["status"] == "settled" and "4111111111111111" not in r.text
    bad = {**body, "reference": "CWCARD2", "card": {**card, "number": "4111111111111112"}}
    r = await rail.post("/v1/charges", json=bad)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "card.number"
    assert "4111111111111112" not in r.text
    import asyncpg

    conn = await asyncpg.connect(platform.database_url)
    try:
        rows = await conn.fetch("SELECT * FROM rail.charges")
    finally:
        await conn.close()
    assert "4111111111111111" not in str([dict(r) for r in rows])
