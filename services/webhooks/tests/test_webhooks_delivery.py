"""Events fan out to endpoints and reach them signed, retried, dead-lettered, replayed."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from aiokafka import AIOKafkaConsumer
from standardwebhooks.webhooks import Webhook

from clearway.shared.events import header_map
from clearway.webhooks.settings import EVENTS_TOPIC as WEBHOOK_EVENTS

pytestmark = pytest.mark.integration


async def test_503_three_times_then_200_delivers_on_the_schedule_with_one_webhook_id(
    service, receiver_factory, publish, make_event, eventually
):
    receiver = await receiver_factory(
        lambda req, n: (503, {}, b"busy") if n <= 3 else (200, {}, b"ok")
    )
    endpoint = await service.create_endpoint(receiver.url)
    event = make_event(1)
    await publish([event])

    await eventually(lambda: len(receiver.requests) >= 4)
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1, "every attempt carries the same webhook-id"
    msg_id = ids.pop()
    assert msg_id.startswith("msg_")
    # waits follow the compressed schedule (0.3 s ±20 %): never earlier than its lower bound
    times = [r.at for r in receiver.requests]
    assert all(b - a >= 0.3 * 0.8 - 0.02 for a, b in itertools.pairwise(times))
    for r in receiver.requests:  # each attempt is signed afresh and verifies
        Webhook(endpoint["secret"]).verify(r.body, r.headers)
        assert r.headers["x-correlation-id"] == event.correlation_id
    body = receiver.requests[-1].json
    assert body["type"] == "platform.test_event" and body["event_id"] == event.id
    assert body["data"]["amount"] == 1

    async def delivered() -> bool:
        r = await service.http.get(f"/v1/messages/{msg_id}", headers=service.auth)
        return r.json()["status"] == "delivered"

    await eventually(delivered)
    attempts = (
        await service.http.get(f"/v1/messages/{msg_id}/attempts", headers=service.auth)
    ).json()["data"]
    assert [a["response_code"] for a in attempts] == [503, 503, 503, 200]
    assert attempts[0]["response_body"] == "busy" and attempts[0]["latency_ms"] > 0
    found = await service.http.get(
        "/v1/messages", params={"correlation_id": event.correlation_id}, headers=service.auth
    )
    assert [m["id"] for m in found.json()["data"]] == [msg_id]
    found = await service.http.get(
        "/v1/messages", params={"event_id": event.id}, headers=service.auth
    )
    assert [m["id"] for m in found.json()["data"]] == [msg_id]


async def test_always_failing_is_dead_lettered_with_an_exhausted_event_and_replay_delivers_all(
    service, receiver_factory, publish, make_event, eventually
):
    broken = {"on": True}
    receiver = await receiver_factory(
        lambda req, n: (500, {}, b"\x00garbage\xff" * 500) if broken["on"] else (204, {}, b"")
    )
    endpoint = await service.create_endpoint(receiver.url)
    events = [make_event(i, run="fail") for i in range(3)]
    await publish(events)

    async def failed_messages() -> list[dict]:
        r = await service.http.get(
            "/v1/messages",
            params={"status": "failed", "endpoint_id": endpoint["id"]},
            headers=service.auth,
        )
        return r.json()["data"]

    await eventually(lambda: _len_at_least(failed_messages, 3))
    assert len(receiver.requests) == 3 * 5, "five attempts each, then the dead letter"
    exhausted = await _read_events(service.settings, "webhooks.message.attempt.exhausted", 3)
    assert {e["event_id"] for e in exhausted} == {e.id for e in events}
    assert all(e["attempts"] == 5 and e["last_status_code"] == 500 for e in exhausted)
    attempts = (
        await service.http.get(
            f"/v1/messages/{exhausted[0]['message_id']}/attempts", headers=service.auth
        )
    ).json()["data"]
    assert len(attempts[0]["response_body"]) <= 1024, "response bodies are truncated"

    broken["on"] = False
    replay = await service.http.post(
        "/v1/replays",
        json={
            "endpoint_id": endpoint["id"],
            "since": "2000-01-01T00:00:00Z",
            "until": "2100-01-01T00:00:00Z",
            "status": "failed",
        },
        headers=service.auth,
    )
    assert replay.status_code == 202, replay.text
    await eventually(
        lambda: _len_at_least(lambda: _status(service, endpoint["id"], "delivered"), 3)
    )
    assert {r.json["event_id"] for r in receiver.requests[-3:]} == {e.id for e in events}
    job = (
        await service.http.get(f"/v1/replays/{replay.json()['id']}", headers=service.auth)
    ).json()
    assert job["state"] == "done" and job["queued"] == 3


async def test_a_410_disables_the_endpoint_and_its_later_events_are_stored_as_skipped(
    service, receiver_factory, publish, make_event, eventually
):
    receiver = await receiver_factory(lambda req, n: (410, {}, b"gone"))
    endpoint = await service.create_endpoint(receiver.url)
    await publish([make_event(1, run="gone")])
    disabled = await _read_events(service.settings, "webhooks.endpoint.disabled", 1)
    assert disabled[0]["endpoint_id"] == endpoint["id"]
    ep = (await service.http.get(f"/v1/endpoints/{endpoint['id']}", headers=service.auth)).json()
    assert ep["disabled"] is True and "410" in ep["disabled_reason"]

    await publish([make_event(2, run="gone")])
    await eventually(lambda: _len_at_least(lambda: _status(service, endpoint["id"], "skipped"), 1))
    assert len(receiver.requests) == 1


async def _status(service, endpoint_id: str, status: str) -> list[dict]:
    r = await service.http.get(
        "/v1/messages", params={"status": status, "endpoint_id": endpoint_id}, headers=service.auth
    )
    return r.json()["data"]


async def _len_at_least(probe, n: int) -> bool:
    return len(await probe()) >= n


async def _read_events(settings, type_: str, n: int) -> list[dict]:
    consumer = AIOKafkaConsumer(
        settings.topic(WEBHOOK_EVENTS),
        **settings.platform.kafka.client_options(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: list[dict] = []
    try:
        for _ in range(600):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    h = header_map(r.headers)
                    if h["ce_type"] == type_:
                        found.append(json.loads(r.value))
            if len(found) >= n:
                return found
    finally:
        await consumer.stop()
    raise AssertionError(f"only {len(found)} {type_} events")


async def test_an_endpoint_failing_continuously_for_the_configured_period_is_disabled(
    service_factory, settings, receiver_factory, publish, make_event, eventually
):
    service = await service_factory(settings.replace(disable_after_failing_s=1.0))
    receiver = await receiver_factory(lambda req, n: (500, {}, b"down"))
    endpoint = await service.create_endpoint(receiver.url)
    # A steady trickle of failures for longer than the period, none succeeding.
    for i in range(6):
        await publish([make_event(i, run="failing")])
        await asyncio.sleep(0.4)
    disabled = await _read_events(service.settings, "webhooks.endpoint.disabled", 1)
    assert disabled[0]["endpoint_id"] == endpoint["id"]
    ep = (await service.http.get(f"/v1/endpoints/{endpoint['id']}", headers=service.auth)).json()
    assert ep["disabled"] is True and receiver.requests
    # Later events for it are kept as skipped (replayable), not attempted.
    attempts_before = len(receiver.requests)
    await publish([make_event(99, run="failing")])
    await eventually(lambda: _len_at_least(lambda: _status(service, endpoint["id"], "skipped"), 1))
    assert len(receiver.requests) == attempts_before
