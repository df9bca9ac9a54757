"""The executor against a rail that misbehaves, and cold-start resumption."""

from __future__ import annotations

import asyncio

import pytest

from clearway.transfer.executor import Executor
from clearway.transfer.rail_client import Rails

pytestmark = pytest.mark.integration


async def _all_final(clearway, n):
    s = await clearway.statuses()
    return len(s) == n and set(s.values()) <= {"settled", "failed"}


async def _post_many(clearway, body, n, prefix):
    for i in range(n):
        r = await clearway.post(f"{prefix}-{i}", {**body, "amount": 100 + i})
        assert r.status_code == 201


async def test_a_rail_that_charges_but_loses_responses_still_charges_each_transfer_once(
    clearway, body, eventually
):
    faults = {"lose_response_rate": 0.5, "error_rate": 0.2}
    assert (await clearway.rail("PUT", "/v1/faults", json=faults)).status_code == 200
    await _post_many(clearway, body, 20, "lossy")
    await eventually(lambda: _all_final(clearway, 20))
    assert set((await clearway.statuses()).values()) == {"settled"}
    injected = (await clearway.rail("GET", "/v1/faults")).json()["injected"]
    assert injected["lose_response"] > 0 and injected["error"] > 0
    assert await clearway.count("SELECT count(*) FROM rail.charges") == 20
    # a lost response was resolved by asking the rail, not by charging again
    assert await clearway.count("SELECT count(*) FROM rail.charge_requests WHERE created") == 20
    assert await clearway.unbalanced() == 0
    assert await clearway.count("SELECT count(*) FROM transfer.ledger_postings") == 40


async def test_a_declined_source_fails_the_transfer_without_postings(clearway, body, eventually):
    r = await clearway.post("nsf", {**body, "source": "acct_nsf1"})
    await eventually(lambda: _all_final(clearway, 1))
    async with clearway.client() as c:
        got = (await c.get(f"/v1/transfers/{r.json()['id']}")).json()
    assert got["status"] == "failed" and "declined" in got["failure_reason"]
    assert await clearway.count("SELECT count(*) FROM transfer.ledger_postings") == 0


async def test_a_cold_start_resumes_pending_and_submitted_transfers(
    start_services, body, eventually
):
    async with start_services(run_executor=False) as cw:
        await _post_many(cw, body, 4, "cold")
        # one was handed to the rail just before a crash, another charged too
        await cw.db.execute(
            "UPDATE transfer.transfers SET status='submitted' WHERE amount IN (101, 102)"
        )
        ref = await cw.db.fetchval("SELECT reference FROM transfer.transfers WHERE amount=102")
        await cw.rail(
            "POST",
            "/v1/charges",
            json={
                "reference": ref,
                "amount": 102,
                "currency": "EUR",
                "source": "acct_payer1",
                "destination": "acct_payee1",
            },
        )
        # a fresh executor (as after a restart) sweeps what is open
        core = cw.app.state.core
        rail = cw.rail_client()
        try:
            assert await Executor(core, Rails(rail, rail)).sweep(older_than_s=0) == 4
        finally:
            await rail.close()
        assert set((await cw.statuses()).values()) == {"settled"}
        assert await cw.count("SELECT count(*) FROM rail.charges") == 4
        assert await cw.unbalanced() == 0


async def test_the_executor_charges_with_short_lived_service_tokens_renewed_before_expiry(
    start_services, body, eventually
):
    async with start_services(token_ttl_s=2) as cw:
        await _post_many(cw, body, 3, "tok1")
        await eventually(lambda: _all_final(cw, 3))
        first = cw.tokens.issued
        assert first >= 1
        await asyncio.sleep(2)  # past 80% of the two-second lifetime
        await _post_many(cw, body, 3, "tok2")
        await eventually(lambda: _all_final(cw, 6))
        assert set((await cw.statuses()).values()) == {"settled"}
        assert cw.tokens.issued > first, "a new token before the old one expired"


async def test_a_transfer_waits_while_the_rail_cannot_be_authorised_and_is_never_failed(
    start_services, body, eventually
):
    async with start_services(client_secret="not-the-secret") as cw:
        await _post_many(cw, body, 2, "noauth")
        # the executor tried: the token endpoint refused our client ...
        await eventually(lambda: _asked(cw, 2))
        # ... and the transfers stay open for a later attempt instead of failing
        assert set((await cw.statuses()).values()) <= {"pending", "submitted"}
        assert await cw.count("SELECT count(*) FROM rail.charges") == 0


async def _asked(cw, n: int) -> bool:
    return cw.tokens.requests >= n
