"""Pure rules: consent life, RFC 9396 details, PKCE, keys at rest, the scope catalog."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clearway.consent.domain import (
    Consent,
    ConsentError,
    InvalidAuthorizationDetails,
    InvalidTransition,
    Status,
    validate_authorization_details,
)
from clearway.consent.scopes import ADMIN_SCOPES, SCOPES, audiences_for, render_markdown
from clearway.consent.tokens import pkce_ok

from .conftest import payment_details

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ACTOR = {"subject": "cl_partner", "client_id": "cl_partner", "delegation": []}


def new_consent(**over) -> Consent:
    args = dict(
        tenant="t1",
        client_id="cl_partner",
        subject=None,
        purpose="pay a bill",
        authorization_details=[payment_details()],
        scopes=["payments:initiate"],
        terms_version="2026-01",
        now=NOW,
        ttl=timedelta(hours=1),
        actor=ACTOR,
    )
    return Consent.create(**(args | over))


def test_a_new_consent_awaits_authorisation_with_a_readable_reference():
    c = new_consent()
    assert c.status is Status.AWAITING and c.id.startswith("cns_")
    assert len(c.reference) == len("CW-XXXX-XXXX")
    assert [t for t, _ in c.events] == ["consent.created"]


def test_approval_records_the_user_and_evidence_then_consumption_is_final():
    c = new_consent()
    c.approve("usr_alice", NOW, {"hash": "h"}, {"subject": "usr_alice"})
    c.consume(NOW, ACTOR)
    assert c.status is Status.CONSUMED and c.subject == "usr_alice" and c.version == 3
    assert [h.status for h in c.history] == [Status.AWAITING, Status.AUTHORISED, Status.CONSUMED]
    with pytest.raises(InvalidTransition):
        c.revoke(NOW, ACTOR)


def test_a_consent_for_one_user_cannot_be_approved_by_another():
    c = new_consent(subject="usr_alice")
    with pytest.raises(ConsentError):
        c.approve("usr_mallory", NOW, {}, {})


def test_an_expired_consent_cannot_be_approved_and_expires():
    c = new_consent()
    later = NOW + timedelta(hours=2)
    with pytest.raises(ConsentError):
        c.approve("usr_alice", later, {}, {})
    c.expire(later)
    assert c.status is Status.EXPIRED


def test_rejected_consents_cannot_be_authorised():
    c = new_consent()
    c.reject("usr_alice", NOW, {})
    with pytest.raises(InvalidTransition):
        c.approve("usr_alice", NOW, {}, {})


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(type="account_information"), "[0].type"),
        (lambda d: d["instructedAmount"].update(amount=0), "[0].instructedAmount.amount"),
        (lambda d: d["instructedAmount"].update(amount="10"), "[0].instructedAmount.amount"),
        (lambda d: d["instructedAmount"].update(currency="EU"), "[0].instructedAmount.currency"),
        (lambda d: d.pop("creditorName"), "[0].creditorName"),
        (lambda d: d.update(creditorAccount={"iban": "123"}), "[0].creditorAccount.iban"),
    ],
)
def test_invalid_payment_details_name_the_field(mutate, field):
    details = payment_details()
    mutate(details)
    with pytest.raises(InvalidAuthorizationDetails) as error:
        validate_authorization_details([details])
    assert error.value.field == f"authorization_details{field}"


def test_payment_details_are_canonicalised():
    d = payment_details(currency="eur")
    d["creditorAccount"]["iban"] = "de02 1001 0010 9307 1186 03"
    out = validate_authorization_details([d])[0]
    assert out["instructedAmount"]["currency"] == "EUR"
    assert out["creditorAccount"]["iban"] == "DE02100100109307118603"


def test_pkce_accepts_only_the_s256_of_the_verifier():
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    challenge_text = challenge.rstrip(b"=").decode()
    assert pkce_ok(verifier, challenge_text)
    assert not pkce_ok("w" * 50, challenge_text)
    assert not pkce_ok(verifier, verifier)  # "plain" is not accepted
    assert not pkce_ok("short", challenge_text)


def test_the_scope_catalog_covers_every_service_and_the_docs_page_is_current():
    names = {s.name for s in SCOPES}
    assert {
        "payments:initiate",
        "payments:read",
        "payments:cancel",
        "webhooks:endpoints:manage",
        "webhooks:read",
        "webhooks:replay",
        "consents:read",
        "consents:write",
        "consents:revoke",
        "audit:read",
    } <= names
    assert ADMIN_SCOPES == {
        "admin:clients",
        "admin:consents",
        "platform:keys",
        "platform:clients",
        "platform:webhooks",
        "platform:dead-letters",
        "platform:audit",
    }
    assert audiences_for({"payments:read", "audit:read"}) == ["clearway-audit", "clearway-transfer"]
    docs = Path(__file__).resolve().parents[3] / "docs" / "scopes.md"
    assert docs.read_text(encoding="utf-8") == render_markdown(), (
        "docs/scopes.md is stale: uv run python -m clearway.consent.scopes docs/scopes.md"
    )
