"""Operators see the fan-out consumer's dead letters and redrive them into it with a
reason (docs/design.md §4.4): the letter is applied then (the partner gets its webhook),
redriven once, and the redrive is audited as the operator's."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from clearway.shared.auth import PLATFORM_TENANT
from clearway.shared.dlt import DeadLetters, dlt_topic
from clearway.shared.kafka import ensure_topics
from clearway.shared.relay import idempotent_producer

from .conftest import AUDIENCE, TENANT

pytestmark = pytest.mark.integration

SCOPE = "platform:dead-letters"


@dataclass
class Failed:
    """A record as the consumer had it when it gave up on it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list


async def test_an_operator_redrives_a_dead_letter_into_the_consumer_once_and_it_is_audited(
    service_factory, settings, receiver_factory, make_event, issuer, platform, eventually
):
    # no relay: the audited action stays in the outbox for the test to read
    service = await service_factory(settings.replace(run_relay=False))
    receiver = await receiver_factory()
    await service.create_endpoint(receiver.url)
    origin = platform.topic("clearway.transfer.events.v1")
    await ensure_topics(platform.kafka, [origin, dlt_topic(origin, "webhooks")])
    event = make_event(1, run="dlt")
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    try:
        record = Failed(origin, 0, 41, event.key, event.body(), event.headers())
        await DeadLetters(producer, "webhooks").send(
            record, ConnectionError("database unreachable"), attempts=10
        )
    finally:
        await producer.stop()

    def bearer(tenant: str) -> dict[str, str]:
        token = issuer.token(
            sub="usr_olga",
            client_id="clearway-console",
            scopes=(SCOPE,),
            audience=AUDIENCE,
            tenant=tenant,
        )
        return {"Authorization": f"Bearer {token}"}

    operator = bearer(PLATFORM_TENANT)
    route = "/v1/platform/dead-letters"
    assert (await service.http.get(route, headers=bearer(TENANT))).status_code == 403
    topics = (await service.http.get(route, headers=operator)).json()["data"]
    [mine] = [t for t in topics if t["topic"] == dlt_topic(origin, "webhooks")]
    assert mine["depth"] == 1
    [letter] = mine["first"]
    assert letter["event_id"] == event.id and letter["type"] == "platform.test_event"
    assert "database unreachable" in letter["error"] and letter["from"].endswith("@41")

    redrive = f"{route}/{mine['topic']}/redrive"
    assert (await service.http.post(redrive, json={}, headers=operator)).status_code == 422
    unknown = await service.http.post(
        f"{route}/nope.dlt/redrive", json={"reason": "try"}, headers=operator
    )
    assert unknown.status_code == 404
    r = await service.http.post(redrive, json={"reason": "outage over"}, headers=operator)
    assert r.status_code == 200, r.text
    assert r.json() == {"topic": mine["topic"], "redriven": 1}
    await eventually(lambda: len(receiver.requests) >= 1)
    assert receiver.requests[0].json["event_id"] == event.id

    again = await service.http.post(redrive, json={"reason": "again"}, headers=operator)
    assert again.json()["redriven"] == 0
    topics = (await service.http.get(route, headers=operator)).json()["data"]
    assert [t["depth"] for t in topics if t["topic"] == mine["topic"]] == [0]
    rows = await service.pool.fetch("SELECT payload FROM outbox ORDER BY id")
    audited = [
        p
        for p in (json.loads(bytes(r["payload"])) for r in rows)
        if p.get("action") == "dead_letters.redriven"
    ]
    assert [(p["resource"], p["reason"]) for p in audited] == [(mine["topic"], "outage over")]
    assert audited[0]["actor"]["subject"] == "usr_olga"
