"""Attackers with consent-bound tokens and client credentials (issue 12 acceptance,
docs/design.md §7): every refusal is a 403 problem naming why and the field at fault.

Tokens come from the test issuer the transfer service trusts, shaped as the consent
service issues them (``consent_id``, RFC 9396 ``authorization_details``); consent
events reach the service's projection over the real consent topic.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from clearway.shared.events import new_event
from clearway.shared.relay import idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.transfer.domain import Account, Owner
from clearway.transfer.events import CONSENT_TOPIC
from clearway.transfer.handlers import register_accounts

pytestmark = pytest.mark.integration

LANDLORD_IBAN = "DE02100100109307118603"
USERS = [
    Account("ten_a", "acct_alice", Owner.USER, "usr_alice", "DE89370400440532013000"),
    Account("ten_a", "acct_bob", Owner.USER, "usr_bob", "DE44500105175407324931"),
    Account("ten_a", "acct_landlord", Owner.EXTERNAL, iban=LANDLORD_IBAN),
    Account("ten_a", "acct_shop", Owner.EXTERNAL, iban="FR1420041010050500013M02606"),
]
RENT = {"amount": 1250, "currency": "EUR", "source": "acct_alice", "destination": "acct_landlord"}


def details(amount: int = 1250, **extra: Any) -> dict[str, Any]:
    return {
        "type": "payment_initiation",
        "instructedAmount": {"amount": amount, "currency": "EUR"},
        "creditorName": "Landlord",
        "creditorAccount": {"iban": LANDLORD_IBAN},
        **extra,
    }


@pytest.fixture
async def cw(clearway):
    await register_accounts(clearway.app.state.core, USERS)
    return clearway


def bound(cw, consent_id: str, *detail: dict[str, Any], sub: str = "usr_alice") -> str:
    """A token bound to ``consent_id``, as the consent service issues it at code redemption."""
    return cw.issuer.token(
        sub=sub,
        client_id="cli_mobile",
        scopes=["payments:initiate", "payments:read"],
        audience="clearway-transfer",
        tenant="ten_a",
        consent_id=consent_id,
        extra_claims={"authorization_details": list(detail or [details()])},
    )


async def post(cw, token: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key or uuid.uuid4().hex}
    async with httpx.AsyncClient(base_url=cw.url, timeout=60) as http:
        return await http.post("/v1/transfers", json=body, headers=headers)


def refused(r: httpx.Response, slug: str, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == 403, r.text
    problem = r.json()
    assert problem["type"].endswith(f"/{slug}"), problem
    if field is not None:
        assert [e["field"] for e in problem["errors"]] == [field], problem
    return problem


def cid() -> str:
    return f"cns_{uuid.uuid4().hex[:24]}"


async def test_a_consent_bound_token_makes_the_transfer_its_consent_allows(cw, published):
    consent_id = cid()
    r = await post(cw, bound(cw, consent_id), RENT)
    assert r.status_code == 201, r.text
    [created] = [e for e in await published() if e.type == "transfer.created"]
    assert created.data["consent_id"] == consent_id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": 10_000_000_00}, "amount"),
        ({"destination": "acct_shop"}, "destination"),
        ({"source": "acct_bob"}, "source"),
        ({"currency": "USD"}, "currency"),
    ],
    ids=["larger-amount", "another-creditor", "another-debtor", "another-currency"],
)
async def test_a_transfer_beyond_the_consent_is_refused_naming_the_field(cw, change, field):
    r = await post(cw, bound(cw, cid()), {**RENT, **change})
    refused(r, "consent-mismatch", field)
    assert await cw.count("SELECT count(*) FROM transfer.transfers") == 0


async def test_a_single_use_consent_works_once_and_its_retry_replays(cw):
    token = bound(cw, cid())
    first = await post(cw, token, RENT, key="rent-1")
    assert first.status_code == 201, first.text
    again = await post(cw, token, RENT, key="rent-1")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    problem = refused(await post(cw, token, RENT, key="rent-2"), "consent-consumed")
    assert problem["consent_status"] == "Consumed"
    # the refused request left its key free: nothing is stored for it
    assert await cw.count("SELECT count(*) FROM transfer.idempotency_keys") == 1


async def test_twenty_concurrent_uses_of_one_single_use_consent_make_exactly_one_transfer(cw):
    token = bound(cw, cid())
    answers = await asyncio.gather(*(post(cw, token, RENT) for _ in range(20)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] + [403] * 19, [r.text for r in answers if r.status_code != 403]
    for r in answers:
        if r.status_code == 403:
            refused(r, "consent-consumed")
    assert await cw.count("SELECT count(*) FROM transfer.transfers") == 1
    assert await cw.count("SELECT count(*) FROM transfer.consent_uses") == 1


async def test_a_recurring_consent_allows_amounts_up_to_its_stated_maximum(cw):
    cap = {"maximumAmount": {"amount": 5000, "currency": "EUR"}}
    consent_id = cid()
    token = bound(cw, consent_id, details(recurring=cap))
    for amount in (1250, 5000, 300):
        r = await post(cw, token, {**RENT, "amount": amount})
        assert r.status_code == 201, r.text
    refused(await post(cw, token, {**RENT, "amount": 5001}), "consent-mismatch", "amount")
    uses = await cw.count("SELECT uses FROM transfer.consent_uses WHERE consent_id=$1", consent_id)
    assert uses == 3


async def test_client_credentials_debit_the_tenants_own_accounts_but_never_a_users(cw):
    ok = await cw.post("own", {**RENT, "source": "acct_payer1"})
    assert ok.status_code == 201, ok.text
    r = await cw.post("users", RENT)
    refused(r, "consent-required", "source")
    for source in ("acct_unknown", "acct_landlord"):
        body = {**RENT, "source": source, "destination": "acct_payee1"}
        refused(await cw.post(source, body), "source-not-permitted", "source")
    other_tenant = await cw.post("b", {**RENT, "source": "acct_alice"}, tenant="ten_b")
    refused(other_tenant, "source-not-permitted", "source")


@pytest.mark.parametrize("status", ["Revoked", "Expired", "Rejected"])
async def test_a_consent_no_longer_authorised_is_refused_naming_its_status(
    cw, platform, eventually, status
):
    consent_id = cid()
    await publish_consent(platform, consent_id, status)

    async def projected():
        sql = "SELECT count(*) FROM transfer.consents WHERE id=$1 AND status=$2"
        return await cw.count(sql, consent_id, status) == 1

    await eventually(projected)  # the consent events reached the projection
    problem = refused(await post(cw, bound(cw, consent_id), RENT), "consent-not-authorised")
    assert problem["consent_status"] == status
    assert await cw.count("SELECT count(*) FROM transfer.transfers") == 0


async def publish_consent(platform, consent_id: str, final: str) -> None:
    """What the consent service publishes for a consent created and then ``final``."""
    registry = default_registry()
    now = datetime.now(UTC)
    at = now.isoformat().replace("+00:00", "Z")
    common = {"consent_id": consent_id, "client_id": "cli_mobile", "reference": "CW-TEST-0001"}
    created = {
        **common,
        "subject": "usr_alice",
        "status": "AwaitingAuthorisation",
        "terms_version": "2026-01",
        "scopes": "payments:initiate",
        "created_at": at,
        "expires_at": (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "actor": None,
    }
    steps = [("consent.created", created)]
    if final != "Rejected":
        steps.append(("consent.authorised", {**common, "status": "Authorised"}))
    changed = {**common, "subject": "usr_alice", "status": final, "changed_at": at}
    if final == "Revoked":
        changed["revoked_at"] = at
    steps.append((f"consent.{final.lower()}", changed))
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    try:
        for version, (type_, data) in enumerate(steps, start=1):
            schema = registry.get(type_, 2)
            if type_ != "consent.created":
                data = {"reason": None, "actor": None, **data}
            if type_ == "consent.authorised":
                data |= {"subject": "usr_alice", "changed_at": at, "evidence_hash": None}
            ev = new_event(
                type=type_,
                source="/clearway/consent",
                aggregate_id=consent_id,
                aggregate_version=version,
                data=registry.validate(type_, 2, data),
                dataschema=schema.dataschema,
                tenant="ten_a",
            )
            await producer.send_and_wait(
                platform.topic(CONSENT_TOPIC),
                value=ev.body(),
                key=ev.key,
                headers=ev.headers(),
            )
    finally:
        await producer.stop()
