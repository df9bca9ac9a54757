"""Transfer intents on Kafka: the same core as HTTP, one result event per intent."""

from __future__ import annotations

import uuid

import pytest

from clearway.shared.dlt import dlt_topic
from clearway.shared.dlt_cli import list_dead_letters
from clearway.shared.events import Event, new_event
from clearway.shared.relay import idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.transfer.domain import Account, Owner
from clearway.transfer.handlers import register_accounts

pytestmark = pytest.mark.integration


def intent(
    key: str,
    body: dict,
    *,
    client_id: str = "cli_mobile",
    tenant: str = "ten_a",
    correlation_id: str | None = None,
) -> Event:
    return new_event(
        type="transfer.intent",
        source="/tests/payroll",
        aggregate_id=f"int_{uuid.uuid4().hex}",
        aggregate_version=1,
        data={"idempotency_key": key, "client_id": client_id, **body},
        dataschema=default_registry().get("transfer.intent", 1).dataschema,
        correlation_id=correlation_id or f"corr_{uuid.uuid4().hex}",
        tenant=tenant,
    )


async def publish(platform, *events: Event) -> None:
    producer = idempotent_producer(platform.kafka_bootstrap)
    await producer.start()
    try:
        for ev in events:
            await producer.send_and_wait(
                platform.topic("clearway.transfer.intents.v1"),
                value=ev.body(),
                key=ev.key,
                headers=ev.headers(),
            )
    finally:
        await producer.stop()


async def test_the_same_intent_delivered_twice_on_kafka_makes_one_transfer(
    clearway, platform, body, eventually, published
):
    ev = intent("payroll-1", body)
    await publish(platform, ev, ev)
    found = await eventually(lambda: _of(published, ev.correlation_id))
    assert [e.type for e in found] == ["transfer.accepted"]
    assert found[0].data["intent_id"] == ev.id
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 1
    await eventually(lambda: _settled(clearway))
    assert await clearway.count("SELECT count(*) FROM rail.charges") == 1


async def _of(published, correlation_id):
    results = ("transfer.accepted", "transfer.rejected")
    return [
        e for e in await published() if e.type in results and e.correlation_id == correlation_id
    ]


async def _settled(clearway):
    return set((await clearway.statuses()).values()) == {"settled"}


async def test_an_intent_with_a_key_already_used_over_http_is_the_same_intent(
    clearway, platform, body, eventually, published
):
    over_http = await clearway.post("shared-1", body)
    assert over_http.status_code == 201
    # the same request again as a second intent message, with its own correlation id
    ev = intent("shared-1", dict(reversed(list(body.items()))))
    await publish(platform, ev)
    [accepted] = await eventually(lambda: _of(published, ev.correlation_id))
    assert accepted.type == "transfer.accepted"
    assert accepted.data["transfer_id"] == over_http.json()["id"]
    assert accepted.data["replayed"] is True
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 1


async def test_an_intent_from_another_client_of_the_tenant_is_another_transfer(
    clearway, platform, body, eventually, published
):
    await clearway.post("k-1", body)
    ev = intent("k-1", body, client_id="cli_payroll")
    await publish(platform, ev)
    [accepted] = await eventually(lambda: _of(published, ev.correlation_id))
    assert accepted.data["replayed"] is False
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": -1}, "amount"),
        ({"currency": "XXX"}, "currency"),
    ],
)
async def test_a_bad_intent_is_rejected_with_its_correlation_id_naming_the_field(
    clearway, platform, body, eventually, published, change, field
):
    ev = intent("bad-1", {**body, **change})
    await publish(platform, ev)
    [rejected] = await eventually(lambda: _of(published, ev.correlation_id))
    assert rejected.type == "transfer.rejected"
    assert rejected.data["field"] == field
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 0


async def test_an_intent_carrying_a_card_number_is_dead_lettered_masked(
    clearway, platform, body, eventually, published
):
    """docs/design.md §9: in any form, the intent goes to the dead-letter topic with the
    reason naming the field, and the copy there holds the last four digits only."""
    forms = {
        "data.description": {"description": "card \\u0034111111111111111"},
        "data.source": {"source": "tok_4111111111111111"},
        "data.metadata.note": {"metadata": {"note": "4111.1111.1111.1111"}},
        "data.metadata.pan": {"metadata": {"pan": "4111  1111  1111  1111"}},
    }
    events = {
        where: intent(f"pan-{i}", {**body, **change})
        for i, (where, change) in enumerate(forms.items())
    }
    await publish(platform, *events.values())
    dlt = dlt_topic(platform.topic("clearway.transfer.intents.v1"), "transfer-intents")

    async def letters():
        try:
            found = await list_dead_letters(platform.kafka_bootstrap, dlt)
        except AssertionError:  # the dead-letter topic does not exist yet
            return None
        return found if len(found) == len(events) else None

    found = await eventually(letters)
    by_correlation = {
        next(v for k, v in d.original_headers if k == "ce_correlationid").decode(): d for d in found
    }
    for where, ev in events.items():
        letter = by_correlation[ev.correlation_id]
        assert letter.meta("error_message") == (
            f"card number refused in {where}; send a card token (docs/design.md §9)"
        )
        copy = (letter.value or b"").decode()
        assert "[PAN ****1111]" in copy and "111111111111" not in copy, copy
        assert "\\u0034" not in copy
    assert not [e for e in await published() if e.correlation_id in by_correlation]
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 0


async def test_an_intent_debiting_a_users_account_is_rejected_naming_the_source(
    clearway, platform, body, eventually, published
):
    # An intent carries no consent: like client credentials, it debits only the
    # tenant's own accounts (docs/design.md §5).
    user = Account("ten_a", "acct_alice", Owner.USER, "usr_alice")
    await register_accounts(clearway.app.state.core, [user])
    ev = intent("users-1", {**body, "source": "acct_alice"})
    await publish(platform, ev)
    [rejected] = await eventually(lambda: _of(published, ev.correlation_id))
    assert rejected.type == "transfer.rejected"
    assert rejected.data["field"] == "source"
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 0
