"""Every domain's events become audit records, exactly once, through Kafka."""

from __future__ import annotations

import pytest

from clearway.audit.consumers import topic_pattern
from clearway.shared import dlt_cli
from clearway.shared.consumer import IdempotentConsumer
from clearway.shared.dlt import DeadLetters, dlt_topic
from clearway.shared.kafka import ensure_topics, make_broker
from clearway.shared.testing.helpers import eventually

from .conftest import event

pytestmark = pytest.mark.integration

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def actor(subject: str, client: str = "app_mobile", delegation=()) -> dict:
    return {"subject": subject, "client_id": client, "delegation": list(delegation)}


def test_the_pattern_matches_event_topics_only():
    import re

    p = re.compile(topic_pattern("t1."))
    assert p.match("t1.clearway.transfer.events.v1")
    assert p.match("t1.clearway.webhooks.events.v1")
    assert p.match("t1.clearway.consent.events.v2")  # a topic's later major (ADR 0039)
    assert not p.match("t1.clearway.transfer.events.v1.audit.dlt")
    assert not p.match("t1.clearway.transfer.intents.v1")
    assert not p.match("t2.clearway.transfer.events.v1")


async def test_consent_decisions_and_admin_actions_are_recorded_with_who_why_and_when(
    audit_service,
):
    s = audit_service
    approved = event(
        "consent",
        "authorised",
        "cns_1",
        2,
        {
            "actor": actor("user_ann", delegation=["agent_7"]),
            "reason": "pay rent",
            "approver": "user_ann",
        },
        correlation_id="corr_c",
        tenant="tn_1",
        traceparent=TRACE,
    )
    revoked = event(
        "consent",
        "revoked",
        "cns_1",
        3,
        {"actor": actor("user_ann"), "reason": "changed my mind", "approver": "user_ann"},
        correlation_id="corr_c",
        tenant="tn_1",
    )
    admin = event(
        "webhooks",
        "admin_action",
        "ep_9",
        1,
        {
            "actor": actor("ops_kim", "ops-console"),
            "action": "endpoint.disable",
            "resource": "ep_9",
            "reason": "partner outage",
            "approver": "ops_lead",
        },
        tenant="tn_1",
    )
    await s.publish("consent", approved, revoked)
    await s.publish("webhooks", admin)

    async def three() -> bool:
        return await s.count() == 3

    await eventually(three)
    rows = {
        r["action"]: r
        for r in await s.admin.fetch(
            "SELECT content::jsonb ->> 'action' AS action, content::jsonb AS doc FROM records"
        )
    }
    doc = rows["consent.authorised"]["doc"]
    assert doc["actor"] == actor("user_ann", delegation=["agent_7"])
    assert (doc["reason"], doc["approver"], doc["consent_id"]) == ("pay rent", "user_ann", "cns_1")
    assert doc["occurred_at"] and doc["recorded_at"] and doc["source_event_id"] == approved.id
    assert doc["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert doc["correlation_id"] == "corr_c" and doc["outcome"] == "success"
    assert rows["consent.revoked"]["doc"]["reason"] == "changed my mind"
    adm = rows["endpoint.disable"]["doc"]
    assert (adm["actor"]["subject"], adm["reason"], adm["approver"]) == (
        "ops_kim",
        "partner outage",
        "ops_lead",
    )
    assert (adm["type"], adm["resource"]) == ("webhooks.admin_action", "ep_9")


async def test_replaying_every_topic_from_the_beginning_adds_no_record(audit_service):
    s = audit_service
    evs = [
        event("transfer", "created" if i % 2 else "failed", f"tr_{i}", 1, {}, correlation_id="c")
        for i in range(30)
    ]
    await s.publish("transfer", *evs)
    await s.publish("transfer", *evs[:10])  # producers republish: same ids

    async def thirty() -> bool:
        return await s.count() == 30

    await eventually(thirty)
    # A second consumer group reads all topics from offset 0 again.
    consumer: IdempotentConsumer = s.app.state.consumer
    replayer = IdempotentConsumer(
        "audit",
        consumer.pool,
        DeadLetters(s.producer, "audit-replay"),
        batch_handler=consumer.batch_handler,
    )
    broker = make_broker(s.settings.platform.kafka)
    from clearway.shared.kafka import subscribe_idempotent

    subscribe_idempotent(
        broker,
        replayer,
        group_id="audit-replay",
        pattern=topic_pattern(s.settings.platform.topic_prefix),
    )
    await broker.start()
    try:

        async def replayed() -> bool:
            return replayer.duplicates >= 40

        await eventually(replayed)
    finally:
        await broker.stop()
    assert await s.count() == 30
    assert replayer.applied == 0
    failed = await s.admin.fetchval(
        "SELECT count(*) FROM records WHERE content::jsonb->>'outcome' = 'failure'"
    )
    assert failed == 15


async def test_malformed_events_go_to_the_dead_letter_topic_with_the_reason(audit_service):
    s = audit_service
    topic = s.settings.platform.topic_prefix + "clearway.transfer.events.v1"
    dlt = dlt_topic(topic, "audit")
    await ensure_topics(s.settings.platform.kafka, [dlt])
    await s.producer.send_and_wait(
        topic,
        b"not json",
        key=b"k",
        headers=[
            ("ce_id", b"evt_x"),
            ("ce_type", b"transfer.created"),
            ("ce_source", b"/t"),
            ("ce_subject", b"tr_x"),
        ],
    )
    bad_actor = event("transfer", "created", "tr_y", 1, {"actor": "just a string"})
    good = event("transfer", "created", "tr_z", 1, {"actor": actor("user_z")})
    await s.publish("transfer", bad_actor, good)
    letters = []

    async def two_letters() -> bool:
        letters[:] = await dlt_cli.list_dead_letters(s.settings.platform.kafka, dlt)
        return len(letters) == 2

    await eventually(two_letters, timeout=90, interval=1.0)
    reasons = sorted(d.meta("error_type") for d in letters)
    assert reasons == ["MalformedEvent", "PermanentError"]
    assert any("actor" in (d.meta("error_message") or "") for d in letters)

    async def good_recorded() -> bool:
        return await s.count() == 1

    await eventually(good_recorded)
