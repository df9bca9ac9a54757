"""POST /v1/transfers and friends, against the real stack and a real rail."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

pytestmark = pytest.mark.integration


async def test_a_transfer_is_created_pending_and_ends_settled_with_balanced_postings(
    clearway, body, eventually
):
    r = await clearway.post("key-1", body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"].startswith("tr_")
    assert created["reference"].startswith("CW") and len(created["reference"]) <= 35
    assert created["status"] == "pending"
    assert (created["amount"], created["currency"]) == (12500, "EUR")
    assert "Idempotent-Replayed" not in r.headers

    async def settled():
        async with clearway.client() as c:
            got = await c.get(f"/v1/transfers/{created['id']}")
        return got.json()["status"] == "settled"

    await eventually(settled)
    assert await clearway.unbalanced() == 0
    assert await clearway.count("SELECT count(*) FROM transfer.ledger_postings") == 2
    charge = await clearway.rail("GET", f"/v1/charges/{created['reference']}")
    assert charge.json()["amount"] == 12500


async def test_the_same_key_and_body_in_another_field_order_replays_the_stored_answer(
    clearway, body, eventually
):
    first = await clearway.post("key-replay", {**body, "metadata": {"z": "1", "a": "2"}})
    reordered = json.dumps(
        dict(reversed(list({**body, "metadata": {"a": "2", "z": "1"}}.items()))), indent=3
    )
    again = await clearway.post("key-replay", reordered)
    assert again.status_code == first.status_code == 201
    # byte for byte, not merely equal JSON: a JSONB round trip would reorder the keys
    assert again.content == first.content
    assert first.content.index(b'"z"') < first.content.index(b'"a"')
    assert again.headers["Idempotent-Replayed"] == "true"
    await eventually(lambda: _status_is(clearway, first.json()["id"], "settled"))
    third = await clearway.post("key-replay", reordered)
    assert third.content == first.content and third.headers["Idempotent-Replayed"] == "true"
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 1
    assert await clearway.count("SELECT count(*) FROM rail.charges") == 1


async def _status_is(clearway, transfer_id: str, status: str) -> bool:
    return (await clearway.statuses()).get(transfer_id) == status


async def test_a_missing_idempotency_key_is_a_400(clearway, body):
    r = await clearway.post(None, body)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "Idempotency-Key" in r.json()["detail"]


async def test_reusing_a_key_with_another_amount_is_a_422_and_changes_nothing(clearway, body):
    assert (await clearway.post("key-x", body)).status_code == 201
    r = await clearway.post("key-x", {**body, "amount": 99})
    assert r.status_code == 422
    assert r.json()["type"].endswith("idempotency-key-reused")
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 1


async def test_two_tenants_using_the_same_key_get_two_independent_transfers(clearway, body):
    a = await clearway.post("shared-key", body, tenant="ten_a")
    b = await clearway.post("shared-key", body, tenant="ten_b")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert a.json()["reference"] != b.json()["reference"]
    assert "Idempotent-Replayed" not in b.headers
    async with clearway.client(tenant="ten_b") as c:
        assert (await c.get(f"/v1/transfers/{a.json()['id']}")).status_code == 404
        listed = await c.get("/v1/transfers", params={"reference": a.json()["reference"]})
    assert listed.json()["data"] == []


async def test_fifty_concurrent_identical_requests_execute_once_and_never_answer_5xx(
    clearway, body, eventually
):
    answers = await asyncio.gather(*(clearway.post("key-burst", body) for _ in range(50)))
    codes = [r.status_code for r in answers]
    assert all(c in (201, 409) for c in codes), codes
    ok = [r for r in answers if r.status_code == 201]
    assert len({r.json()["id"] for r in ok}) == 1
    assert sum(1 for r in ok if "Idempotent-Replayed" not in r.headers) == 1
    for r in answers:
        if r.status_code == 409:
            assert int(r.headers["Retry-After"]) >= 1
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 1
    transfer_id = ok[0].json()["id"]
    await eventually(lambda: _status_is(clearway, transfer_id, "settled"))
    assert await clearway.count("SELECT count(*) FROM rail.charges") == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": -5}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"amount": "100"}, "amount"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "eur"}, "currency"),
        ({"destination": "tok_abc"}, "destination"),
    ],
)
async def test_bad_money_is_a_422_naming_the_field_and_nothing_is_stored(
    clearway, body, change, field
):
    r = await clearway.post("key-bad", {**body, **change})
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]
    assert await clearway.count("SELECT count(*) FROM transfer.idempotency_keys") == 0
    # the validation error was not stored: the key is still free for a good request
    assert (await clearway.post("key-bad", body)).status_code == 201


@pytest.mark.parametrize(
    ("where", "pan"),
    [
        ("description", "4242 4242 4242 4242"),
        ("metadata.card", "5555-5555-5555-4444"),
        ("source", "4000056655665556"),
    ],
)
async def test_a_card_number_anywhere_is_refused_naming_the_field_without_echoing_it(
    clearway, body, where, pan
):
    doc = dict(body)
    if where.startswith("metadata."):
        doc["metadata"] = {"card": pan}
    else:
        doc[where] = pan
    r = await clearway.post("key-pan", doc)
    assert r.status_code == 422
    assert f"'{where}'" in r.json()["detail"]
    digits = pan.replace(" ", "").replace("-", "")
    assert digits not in r.text.replace(" ", "").replace("-", "")
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 0
    assert await clearway.count("SELECT count(*) FROM transfer.outbox") == 0


async def test_transfers_are_listed_by_reference_page_by_page(clearway, body):
    refs = []
    for i in range(3):
        r = await clearway.post(f"key-list-{i}", {**body, "amount": 100 + i})
        refs.append(r.json()["reference"])
    async with clearway.client() as c:
        one = await c.get("/v1/transfers", params={"reference": refs[1]})
        first = await c.get("/v1/transfers", params={"limit": 2})
        cursor = first.json()["next_cursor"]
        second = await c.get("/v1/transfers", params={"limit": 2, "cursor": cursor})
        # a cursor is bound to its filters: it cannot be carried to another query
        refiltered = await c.get("/v1/transfers", params={"cursor": cursor, "reference": refs[0]})
        flipped = "B" if cursor[8] == "A" else "A"  # a middle character carries 6 full bits
        forged = await c.get("/v1/transfers", params={"cursor": cursor[:8] + flipped + cursor[9:]})
        too_many = await c.get("/v1/transfers", params={"limit": 101})
    async with clearway.client(tenant="ten_b") as other:
        foreign = await other.get("/v1/transfers", params={"cursor": cursor})
    assert [t["reference"] for t in one.json()["data"]] == [refs[1]]
    assert one.json()["has_more"] is False and one.json()["next_cursor"] is None
    assert [t["reference"] for t in first.json()["data"]] == refs[:2]
    assert first.json()["has_more"] is True
    assert [t["reference"] for t in second.json()["data"]] == refs[2:]
    assert second.json()["next_cursor"] is None and second.json()["has_more"] is False
    for refused in (refiltered, forged, foreign):
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "query.cursor"
    assert too_many.status_code == 422


async def test_every_route_declares_its_scope(clearway, body):
    from clearway.shared.auth import route_scopes

    scopes = route_scopes(clearway.app)
    assert scopes[("POST", "/v1/transfers")] == {"payments:initiate"}
    assert scopes[("GET", "/v1/transfers/{transfer_id}")] == {"payments:read"}
    assert scopes[("GET", "/v1/transfers")] == {"payments:read"}
    assert scopes[("POST", "/v1/transfers/{transfer_id}/cancel")] == {"payments:cancel"}
    r = await clearway.post("key-scope", body, scopes=("payments:read",))
    assert r.status_code == 403


async def test_the_openapi_document_publishes_a_request_example(clearway):
    async with clearway.client() as c:
        doc = (await c.get("/openapi.json")).json()
    op = doc["paths"]["/v1/transfers"]["post"]
    examples = op["requestBody"]["content"]["application/json"]["examples"]
    assert examples["sepa"]["value"]["currency"] == "EUR"


async def test_a_consent_revoked_on_kafka_stops_its_tokens_at_once(start_services, body, platform):
    import time

    from clearway.shared.auth import CONSENT_EVENTS_TOPIC
    from clearway.shared.events import new_event
    from clearway.shared.relay import idempotent_producer

    async with start_services(revocation_feed=True) as cw:
        token = cw.issuer.token(
            sub="usr_1",
            client_id="cli_mobile",
            scopes=["payments:read"],
            audience="clearway-transfer",
            tenant="ten_a",
            consent_id="cns_1",
        )
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=cw.url, headers=headers) as c:
            assert (await c.get("/v1/transfers")).status_code == 200
            producer = idempotent_producer(platform.kafka)
            await producer.start()
            ev = new_event(
                type="consent.revoked",
                source="/tests/consent",
                aggregate_id="cns_1",
                aggregate_version=2,
                data={"consent_id": "cns_1", "revoked_at": time.time()},
            )
            await producer.send_and_wait(
                platform.topic(CONSENT_EVENTS_TOPIC),
                value=ev.body(),
                key=ev.key,
                headers=ev.headers(),
            )
            await producer.stop()
            for _ in range(100):
                if (await c.get("/v1/transfers")).status_code == 401:
                    break
                await asyncio.sleep(0.1)
            assert (await c.get("/v1/transfers")).status_code == 401
