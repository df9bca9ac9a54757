"""Revocation reaches every service's revocation set; key rotation fails no request."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from joserfc import jws

from clearway.shared.testing.helpers import eventually

from .conftest import authorised_token

pytestmark = pytest.mark.integration

TRIALS = 100


async def test_a_revoked_consent_is_refused_by_a_kit_protected_service_measured_over_100_trials(
    consent, resource, capsys
):
    partner = consent.client(0, "partner")
    revoker = await consent.token(partner, "consents:revoke")
    bound = [await authorised_token(consent, partner) for _ in range(TRIALS)]
    delays: list[float] = []
    for consent_id, token in bound:
        headers = {"Authorization": f"Bearer {token}"}
        before = await consent.http.get(f"{resource.url}/v1/transfers", headers=headers)
        assert before.status_code == 200, before.text
        deleted = await consent.http.delete(
            f"{consent.url}/v1/consents/{consent_id}",
            headers={"Authorization": f"Bearer {revoker}"},
        )
        assert deleted.status_code == 200 and deleted.json()["status"] == "Revoked"
        t0 = time.perf_counter()
        deadline = t0 + 30
        while time.perf_counter() < deadline:
            r = await consent.http.get(f"{resource.url}/v1/transfers", headers=headers)
            if r.status_code == 401:
                assert "revoked" in r.json()["detail"]
                break
            assert r.status_code == 200
        else:
            raise AssertionError(f"consent {consent_id} still accepted after 30 s")
        delays.append(time.perf_counter() - t0)
    delays.sort()
    with capsys.disabled():
        print(
            f"\nrevocation → first 401: p50={statistics.median(delays) * 1000:.0f}ms"
            f" p99={delays[int(0.99 * (len(delays) - 1))] * 1000:.0f}ms"
            f" max={delays[-1] * 1000:.0f}ms n={len(delays)}"
        )


async def test_rotating_the_signing_key_while_requests_flow_fails_no_request(consent, resource):
    auditor_client = consent.client(0, "partner")
    admin = await consent.token(consent.operator(), "platform:keys")
    old_kid = consent.svc.keys.signer().kid
    results: list[int] = []
    kids_used: set[str] = set()
    stop = asyncio.Event()

    async def caller() -> None:
        token, fetched = "", 0.0
        while not stop.is_set():
            if time.monotonic() - fetched > 0.5:  # fresh tokens pick up the new key
                token, fetched = (
                    await consent.token(auditor_client, "payments:read"),
                    time.monotonic(),
                )
                kids_used.add(jws.extract_compact(token.encode()).headers()["kid"])
            r = await consent.http.get(
                f"{resource.url}/v1/transfers", headers={"Authorization": f"Bearer {token}"}
            )
            results.append(r.status_code)

    old_token = await consent.token(auditor_client, "payments:read")
    tasks = [asyncio.create_task(caller()) for _ in range(3)]
    try:
        await asyncio.sleep(1.0)
        rotated = await consent.http.post(
            f"{consent.url}/v1/platform/keys/rotation",
            json={"reason": "scheduled drill"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert rotated.status_code == 200, rotated.text
        new_kid = rotated.json()["kid"]
        assert new_kid in {
            k["kid"]
            for k in (await consent.http.get(f"{consent.url}/.well-known/jwks.json")).json()["keys"]
        }

        async def new_key_in_use() -> bool:
            return new_kid in kids_used

        await eventually(new_key_in_use, timeout=60)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert kids_used >= {old_kid, new_kid}
    assert len(results) > 20 and set(results) == {200}
    # a token signed by the retired key still works until it expires
    still = await consent.http.get(
        f"{resource.url}/v1/transfers", headers={"Authorization": f"Bearer {old_token}"}
    )
    assert still.status_code == 200
