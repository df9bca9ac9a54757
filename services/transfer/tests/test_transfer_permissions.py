"""Who may debit what: pure rules of ``clearway.transfer.domain`` (docs/design.md §7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clearway.transfer.domain import (
    Account,
    ConsentState,
    Owner,
    Refused,
    TransferRequest,
    check_consent,
    check_tenant_debit,
    current_consent,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ALICE = Account("ten_a", "acct_alice", Owner.USER, "usr_alice", "DE89370400440532013000")
BOB = Account("ten_a", "acct_bob", Owner.USER, "usr_bob", "DE44500105175407324931")
TREASURY = Account("ten_a", "acct_treasury", Owner.TENANT)
LANDLORD = Account("ten_a", "acct_landlord", Owner.EXTERNAL, iban="DE02100100109307118603")
SHOP = Account("ten_a", "acct_shop", Owner.EXTERNAL, iban="FR1420041010050500013M02606")


def details(amount: int = 1250, **extra) -> dict:
    return {
        "type": "payment_initiation",
        "instructedAmount": {"amount": amount, "currency": "EUR"},
        "creditorName": "Landlord",
        "creditorAccount": {"iban": LANDLORD.iban},
        **extra,
    }


def consent(status: str = "Authorised", *detail: dict, **kw) -> ConsentState:
    fields = {
        "id": "cns_1",
        "tenant": "ten_a",
        "subject": "usr_alice",
        "status": status,
        "authorization_details": detail or (details(),),
        "expires_at": NOW + timedelta(hours=1),
    } | kw
    return ConsentState(**fields)


def request(amount: int = 1250, source: str = "acct_alice", destination: str = "acct_landlord"):
    return TransferRequest(amount, "EUR", source, destination)


def check(c: ConsentState, req: TransferRequest, source=ALICE, destination=LANDLORD):
    return check_consent(c, "ten_a", req, source, destination, NOW)


def refused(fn, *args) -> Refused:
    with pytest.raises(Refused) as e:
        fn(*args)
    return e.value


def test_a_matching_transfer_uses_a_single_use_consent():
    use = check(consent(), request())
    assert (use.consent_id, use.single_use) == ("cns_1", True)


@pytest.mark.parametrize(
    ("req", "source", "destination", "field"),
    [
        (request(amount=1_000_000_000), ALICE, LANDLORD, "amount"),
        (request(amount=1249), ALICE, LANDLORD, "amount"),
        (request(destination="acct_shop"), ALICE, SHOP, "destination"),
        (request(destination="acct_unknown"), ALICE, None, "destination"),
        (request(source="acct_bob"), BOB, LANDLORD, "source"),
        (request(source="acct_treasury"), TREASURY, LANDLORD, "source"),
        (request(source="acct_unknown"), None, LANDLORD, "source"),
    ],
)
def test_a_transfer_that_does_not_match_names_the_field(req, source, destination, field):
    e = refused(check, consent(), req, source, destination)
    assert (e.slug, e.field) == ("consent-mismatch", field)


def test_the_currency_must_match():
    e = refused(check, consent(), TransferRequest(1250, "USD", "acct_alice", "acct_landlord"))
    assert (e.slug, e.field) == ("consent-mismatch", "currency")


def test_a_stated_debtor_account_must_be_the_source():
    stated = consent("Authorised", details(debtorAccount={"iban": "DE00999999999999999999"}))
    assert refused(check, stated, request()).field == "source"
    ok = consent("Authorised", details(debtorAccount={"iban": ALICE.iban}))
    assert check(ok, request()).single_use


def test_a_recurring_consent_allows_amounts_up_to_its_maximum_and_is_not_single_use():
    cap = {"maximumAmount": {"amount": 5000, "currency": "EUR"}}
    recurring = consent("Authorised", details(recurring=cap))
    for amount in (1, 1250, 5000):
        assert check(recurring, request(amount=amount)).single_use is False
    assert refused(check, recurring, request(amount=5001)).field == "amount"


@pytest.mark.parametrize("status", ["Revoked", "Rejected", "Expired", "AwaitingAuthorisation"])
def test_a_consent_that_is_not_authorised_is_refused_naming_its_status(status):
    e = refused(check, consent(status), request())
    assert (e.slug, e.status) == ("consent-not-authorised", status)


def test_a_consumed_consent_is_refused_as_consumed():
    e = refused(check, consent("Consumed"), request())
    assert (e.slug, e.status) == ("consent-consumed", "Consumed")


def test_an_authorised_consent_past_its_expiry_counts_as_expired():
    e = refused(check, consent(expires_at=NOW), request())
    assert (e.slug, e.status) == ("consent-not-authorised", "Expired")


def test_another_tenants_consent_is_refused():
    assert refused(check, consent(tenant="ten_b"), request()).slug == "consent-mismatch"


def test_client_credentials_debit_only_the_tenants_own_accounts():
    check_tenant_debit("ten_a", "acct_treasury", TREASURY)
    check_tenant_debit("ten_a", "tok_card1", None)  # card tokens: the vault's checks
    e = refused(check_tenant_debit, "ten_a", "acct_alice", ALICE)
    assert (e.slug, e.field) == ("consent-required", "source")
    for account in (LANDLORD, None, Account("ten_b", "acct_treasury", Owner.TENANT)):
        e = refused(check_tenant_debit, "ten_a", "acct_x", account)
        assert (e.slug, e.field) == ("source-not-permitted", "source")


def test_the_projection_wins_once_it_has_seen_the_consent_authorised():
    token = consent()
    assert current_consent(None, token) is token
    assert current_consent(consent("AwaitingAuthorisation"), token) is token
    # the projection has no authorization details (ADR 0039): the token's are used
    bare = consent("Revoked", authorization_details=())
    merged = current_consent(bare, token)
    assert (
        merged.status == "Revoked" and merged.authorization_details == token.authorization_details
    )
