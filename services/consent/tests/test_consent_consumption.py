"""A transfer made under a consent consumes a single payment consent in the consent
service's own record (``transfer.created`` carries ``consent_id``; docs/design.md §7);
recurring consents are never consumed and state their maximum."""

from __future__ import annotations

import uuid

import pytest

from clearway.consent import handlers
from clearway.consent.domain import (
    InvalidAuthorizationDetails,
    Status,
    validate_authorization_details,
)
from clearway.shared.events import new_event
from clearway.shared.relay import idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.shared.testing.helpers import eventually

from .conftest import authorised_token, payment_details

RECURRING = {"maximumAmount": {"amount": 20000, "currency": "EUR"}}


async def publish_transfer_created(consent, tenant: str, consent_id: str) -> None:
    """What the transfer service publishes for a transfer made under ``consent_id``."""
    registry = default_registry()
    transfer_id = f"tr_{uuid.uuid4().hex}"
    data = registry.validate(
        "transfer.created",
        1,
        {
            "transfer_id": transfer_id,
            "reference": "CWTESTREFERENCE",
            "amount": 12345,
            "currency": "EUR",
            "status": "pending",
            "source": "acct_alice",
            "destination": "acct_merchant",
            "actor": {"subject": "usr_alice", "client_id": "tnt_demo_alpha-partner"},
            "consent_id": consent_id,
        },
    )
    ev = new_event(
        type="transfer.created",
        source="/clearway/transfer",
        aggregate_id=transfer_id,
        aggregate_version=1,
        data=data,
        dataschema=registry.get("transfer.created", 1).dataschema,
        tenant=tenant,
    )
    platform = consent.settings.platform
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    try:
        topic = platform.topic("clearway.transfer.events.v1")
        for _ in range(2):  # delivered twice: consumed once
            await producer.send_and_wait(topic, ev.body(), key=ev.key, headers=ev.headers())
    finally:
        await producer.stop()


@pytest.mark.integration
async def test_a_transfer_under_a_single_payment_consent_consumes_it(consent):
    partner = consent.client(0, "partner")
    consent_id, _ = await authorised_token(consent, partner)
    await publish_transfer_created(consent, "tnt_demo_alpha", consent_id)

    async def consumed():
        found = await handlers.get_consent(consent.svc, "tnt_demo_alpha", consent_id)
        return found if found.status is Status.CONSUMED else None

    found = await eventually(consumed)
    assert found.version == 3  # awaiting → authorised → consumed, once
    assert found.history[-1].actor["subject"] == "usr_alice"


@pytest.mark.integration
async def test_a_recurring_consent_is_not_consumed_by_a_transfer(consent):
    partner = consent.client(0, "partner")
    details = [payment_details() | {"recurring": RECURRING}]
    consent_id, _ = await authorised_token(consent, partner, authorization_details=details)
    single_id, _ = await authorised_token(consent, partner)
    await publish_transfer_created(consent, "tnt_demo_alpha", consent_id)
    await publish_transfer_created(consent, "tnt_demo_alpha", single_id)

    async def status(consent_id: str) -> Status:
        return (await handlers.get_consent(consent.svc, "tnt_demo_alpha", consent_id)).status

    async def single_consumed():
        return await status(single_id) is Status.CONSUMED

    await eventually(single_consumed)  # the same consumer got past the recurring one
    assert await status(consent_id) is Status.AUTHORISED


def test_debtor_account_and_recurring_maximum_are_kept_in_canonical_form():
    [d] = validate_authorization_details(
        [
            payment_details()
            | {"debtorAccount": {"iban": "de89 3704 0044 0532 0130 00"}, "recurring": RECURRING}
        ]
    )
    assert d["debtorAccount"] == {"iban": "DE89370400440532013000"}
    assert d["recurring"] == RECURRING


@pytest.mark.parametrize(
    ("recurring", "field"),
    [
        ({"maximumAmount": {"amount": 100, "currency": "EUR"}}, "maximumAmount.amount"),
        ({"maximumAmount": {"amount": 20000, "currency": "USD"}}, "maximumAmount.currency"),
        ({"maximumAmount": 20000}, "maximumAmount.amount"),
    ],
)
def test_a_recurring_maximum_below_the_amount_or_in_another_currency_is_refused(recurring, field):
    with pytest.raises(InvalidAuthorizationDetails) as e:
        validate_authorization_details([payment_details() | {"recurring": recurring}])
    assert e.value.field == f"authorization_details[0].recurring.{field}"
