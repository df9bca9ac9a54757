"""Transfer intents on Kafka: the same core as HTTP, one result event per intent,
and as guarded as HTTP: the sender's access token decides tenant and client."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import httpx
import pytest

from clearway.shared import dlt_cli
from clearway.shared.dlt import dlt_topic
from clearway.shared.dlt_cli import list_dead_letters
from clearway.shared.events import Event, new_event
from clearway.shared.relay import idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.shared.testing.issuer import TestIssuer
from clearway.transfer.domain import Account, Owner
from clearway.transfer.handlers import register_accounts

pytestmark = pytest.mark.integration


INTENTS = "clearway.transfer.intents.v1"
#: What the sender's token must say: like POST /v1/transfers.
INITIATE = ("payments:initiate",)


def service_token(cw, client_id: str = "cli_mobile", tenant: str = "ten_a", **kw) -> str:
    """A client-credentials token of an internal service allowed to initiate."""
    kw.setdefault("scopes", INITIATE)
    kw.setdefault("audience", "clearway-transfer")
    return cw.issuer.token(sub=client_id, client_id=client_id, tenant=tenant, **kw)


def intent(
    cw,
    key: str,
    body: dict,
    *,
    client_id: str = "cli_mobile",
    tenant: str = "ten_a",
    correlation_id: str | None = None,
) -> Event:
    """An intent signed for its own tenant and client (forgeries replace ``authorization``)."""
    ev = new_event(
        type="transfer.intent",
        source="/tests/payroll",
        aggregate_id=f"int_{uuid.uuid4().hex}",
        aggregate_version=1,
        data={"idempotency_key": key, "client_id": client_id, **body},
        dataschema=default_registry().get("transfer.intent", 1).dataschema,
        correlation_id=correlation_id or f"corr_{uuid.uuid4().hex}",
        tenant=tenant,
    )
    return replace(ev, authorization=service_token(cw, client_id, tenant))


async def publish(platform, *events: Event, sent_at: dict[str, float] | None = None) -> None:
    """Publish as an initiator: the one principal the broker lets write intents.

    ``sent_at`` gives some events (by id) the record timestamp they were sent at.
    """
    producer = idempotent_producer(platform.kafka_link(platform.kafka_logins.get("initiator")))
    await producer.start()
    try:
        for ev in events:
            when = (sent_at or {}).get(ev.id)
            await producer.send_and_wait(
                platform.topic(INTENTS),
                value=ev.body(),
                key=ev.key,
                headers=ev.headers(),
                timestamp_ms=None if when is None else int(when * 1000),
            )
    finally:
        await producer.stop()


async def test_the_same_intent_delivered_twice_on_kafka_makes_one_transfer(
    clearway, platform, body, eventually, published
):
    ev = intent(clearway, "payroll-1", body)
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
    ev = intent(clearway, "shared-1", dict(reversed(list(body.items()))))
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
    ev = intent(clearway, "k-1", body, client_id="cli_payroll")
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
    ev = intent(clearway, "bad-1", {**body, **change})
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
        where: intent(clearway, f"pan-{i}", {**body, **change})
        for i, (where, change) in enumerate(forms.items())
    }
    await publish(platform, *events.values())
    dlt = dlt_topic(platform.topic("clearway.transfer.intents.v1"), "transfer-intents")

    async def letters():
        try:
            found = await list_dead_letters(platform.kafka, dlt)
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
    ev = intent(clearway, "users-1", {**body, "source": "acct_alice"})
    await publish(platform, ev)
    [rejected] = await eventually(lambda: _of(published, ev.correlation_id))
    assert rejected.type == "transfer.rejected"
    assert rejected.data["field"] == "source"
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 0


def _forged(cw, ev: Event, how: str) -> Event:
    """``ev`` as an attacker on the broker would send it."""
    if how == "unsigned":
        return replace(ev, authorization=None)
    if how == "another tenant's header":
        return replace(ev, tenant="ten_b")
    if how == "another client's token":
        return replace(ev, authorization=service_token(cw, client_id="cli_payroll"))
    if how == "expired token":
        return replace(ev, authorization=service_token(cw, ttl_s=-120))
    if how == "revoked token":
        jti = f"at_{uuid.uuid4().hex}"
        cw.app.state.token_verifier.revocations.revoke_token(jti, time.time() + 600)
        return replace(ev, authorization=service_token(cw, extra_claims={"jti": jti}))
    if how == "token without payments:initiate":
        return replace(ev, authorization=service_token(cw, scopes=("payments:read",)))
    if how == "token for another audience":
        return replace(ev, authorization=service_token(cw, audience="clearway-rail"))
    if how == "token signed by another key":
        return replace(
            ev,
            authorization=TestIssuer(cw.issuer.issuer).token(
                sub="cli_mobile",
                client_id="cli_mobile",
                scopes=INITIATE,
                audience="clearway-transfer",
                tenant="ten_a",
            ),
        )
    raise AssertionError(how)


FORGERIES = {
    "unsigned": "missing access token",
    "another tenant's header": "ce_tenant does not match",
    "another client's token": "client_id does not match",
    "expired token": "token expired",
    "revoked token": "revoked",
    "token without payments:initiate": "missing scope(s): payments:initiate",
    "token for another audience": "wrong audience",
    "token signed by another key": "unknown kid",
}


async def test_forged_intents_are_rejected_with_the_reason_and_dead_lettered(
    clearway, platform, body, eventually, published
):
    # every forgery at once (one service start): each has its own correlation id
    forged = {
        how: _forged(clearway, intent(clearway, f"forged-{i}", body), how)
        for i, how in enumerate(FORGERIES)
    }
    await publish(platform, *forged.values())
    for how, ev in forged.items():
        [rejected] = await eventually(lambda ev=ev: _of(published, ev.correlation_id))
        assert rejected.type == "transfer.rejected", how
        assert rejected.data["field"] == "authorization", how
        assert FORGERIES[how] in rejected.data["reason"], (how, rejected.data["reason"])
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 0
    dlt = dlt_topic(platform.topic(INTENTS), "transfer-intents")
    letters = await dlt_cli.list_dead_letters(platform.kafka, dlt)
    by_id = {dict(d.original_headers)["ce_id"].decode(): d for d in letters}
    for how, ev in forged.items():
        letter = by_id[ev.id]
        assert letter.meta("error_type") == "Rejected", how
        assert FORGERIES[how] in (letter.meta("error_message") or ""), how
        # the filed copy never keeps a bearer token, live or not
        assert "authorization" not in dict(letter.headers), how


# --- authorisation judged when the intent was sent (ADR 0054) ------------------------------


def token_live_at(cw, sent: float, **kw) -> str:
    """A token issued a minute before ``sent`` and expiring four minutes after it."""
    life = {"iat": int(sent) - 60, "nbf": int(sent) - 60, "exp": int(sent) + 240}
    return service_token(cw, extra_claims={**life, **kw.pop("extra_claims", {})}, **kw)


async def test_an_intent_whose_token_expired_while_it_waited_in_kafka_is_executed(
    clearway, platform, body, eventually, published
):
    # Sent an hour ago with the token of that moment (a consumer outage since): the
    # token is judged at the record's timestamp, not when the consumer reads it.
    sent = time.time() - 3600
    ev = replace(intent(clearway, "backlog-1", body), authorization=token_live_at(clearway, sent))
    await publish(platform, ev, sent_at={ev.id: sent})
    [accepted] = await eventually(lambda: _of(published, ev.correlation_id))
    assert accepted.type == "transfer.accepted", accepted.data
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 1
    # The HTTP edge judges the same token now: expired.
    headers = {"Authorization": f"Bearer {ev.authorization}", "Idempotency-Key": "http-1"}
    async with httpx.AsyncClient(base_url=clearway.url, timeout=30, headers=headers) as c:
        response = await c.post("/v1/transfers", json=body)
    assert response.status_code == 401
    assert response.json()["detail"] == "token expired"


def _sent_wrongly(cw, ev: Event, how: str) -> tuple[Event, float]:
    """``ev`` with its token and the time it was (said to be) sent."""
    now = time.time()
    if how == "sent beyond the maximum backlog age":
        sent = now - cw.settings.intent_max_age_s - 3600
        return replace(ev, authorization=token_live_at(cw, sent)), sent
    if how == "sent in the future":
        return ev, now + 600
    if how == "revoked since it was sent":
        sent = now - 3600
        jti = f"at_{uuid.uuid4().hex}"
        cw.app.state.token_verifier.revocations.revoke_token(jti, sent + 240)
        return replace(ev, authorization=token_live_at(cw, sent, extra_claims={"jti": jti})), sent
    if how == "token issued after it was sent":
        return ev, now - 3600
    raise AssertionError(how)


SENT_WRONGLY = {
    "sent beyond the maximum backlog age": "stale: intent sent",
    "sent in the future": "intent sent in the future",
    "revoked since it was sent": "token revoked",
    "token issued after it was sent": "token issued in the future",
}


async def test_intents_sent_too_long_ago_in_the_future_or_revoked_since_are_dead_lettered(
    clearway, platform, body, eventually, published
):
    sent_at: dict[str, float] = {}
    events: dict[str, Event] = {}
    for i, how in enumerate(SENT_WRONGLY):
        ev, sent_at_ = _sent_wrongly(clearway, intent(clearway, f"when-{i}", body), how)
        events[how], sent_at[ev.id] = ev, sent_at_
    await publish(platform, *events.values(), sent_at=sent_at)
    for how, ev in events.items():
        [rejected] = await eventually(lambda ev=ev: _of(published, ev.correlation_id))
        assert rejected.type == "transfer.rejected", how
        assert rejected.data["field"] == "authorization", how
        assert SENT_WRONGLY[how] in rejected.data["reason"], (how, rejected.data["reason"])
    stale = (await _of(published, events["sent beyond the maximum backlog age"].correlation_id))[0]
    assert "intent_max_age_s" in stale.data["reason"]
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 0
    dlt = dlt_topic(platform.topic(INTENTS), "transfer-intents")

    async def letters():
        try:
            found = await dlt_cli.list_dead_letters(platform.kafka, dlt)
        except AssertionError:  # the dead-letter topic does not exist yet
            return None
        return found if len(found) == len(events) else None

    by_id = {dict(d.original_headers)["ce_id"].decode(): d for d in await eventually(letters)}
    for how, ev in events.items():
        assert SENT_WRONGLY[how] in (by_id[ev.id].meta("error_message") or ""), how
