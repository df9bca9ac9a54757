"""Audit records say who did what, with which outcome, from the event alone (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from clearway.audit.domain import (
    InvalidAuditEvent,
    canonical,
    derive_outcome,
    entry_from_event,
    leaf_document,
    trace_id_of,
)
from clearway.shared.events import Event

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def ev(type_: str, data: dict, subject: str = "tr_1", **kw) -> Event:
    return Event(
        id="evt_1",
        type=type_,
        source="/t",
        subject=subject,
        data=data,
        time=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        **kw,
    )


def test_an_event_with_an_actor_becomes_a_record_naming_who_why_and_approver():
    e = entry_from_event(
        ev(
            "consent.authorised",
            {
                "actor": {"subject": "user_1", "client_id": "app", "delegation": ["agent_7"]},
                "reason": "customer asked",
                "approver": "user_1",
            },
            subject="cns_9",
            correlation_id="corr_1",
            tenant="tn_1",
            traceparent=TRACEPARENT,
        )
    )
    assert (
        e.actor is not None and e.actor.subject == "user_1" and e.actor.delegation == ("agent_7",)
    )
    assert (e.action, e.resource, e.outcome) == ("consent.authorised", "cns_9", "success")
    assert (e.reason, e.approver, e.consent_id) == ("customer asked", "user_1", "cns_9")
    assert e.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert (e.correlation_id, e.tenant, e.source_event_id) == ("corr_1", "tn_1", "evt_1")


def test_an_admin_action_names_its_own_action_and_resource():
    e = entry_from_event(
        ev(
            "webhooks.admin_action",
            {
                "actor": {"subject": "ops_1", "client_id": "console"},
                "action": "endpoint.disable",
                "resource": "ep_5",
                "reason": "partner asked",
                "approver": {"subject": "ops_lead"},
            },
            subject="ep_5",
        )
    )
    assert (e.action, e.resource, e.approver) == ("endpoint.disable", "ep_5", "ops_lead")
    assert e.event_type == "webhooks.admin_action"


@pytest.mark.parametrize(
    "type_, outcome",
    [
        ("transfer.failed", "failure"),
        ("consent.rejected", "failure"),
        ("webhooks.message_dead_lettered", "failure"),
        ("transfer.settled", "success"),
        ("consent.revoked", "success"),
    ],
)
def test_the_outcome_is_derived_from_the_type_when_the_event_does_not_say(type_, outcome):
    assert derive_outcome(type_) == outcome
    assert entry_from_event(ev(type_, {"outcome": "partial"})).outcome == "partial"


@pytest.mark.parametrize(
    "data",
    [
        {"actor": "user_1"},
        {"actor": {"client_id": "x"}},
        {"actor": {"subject": "u", "delegation": "nope"}},
        {"reason": 7},
        {"approver": 3},
    ],
)
def test_badly_shaped_audit_fields_are_refused(data):
    with pytest.raises(InvalidAuditEvent):
        entry_from_event(ev("transfer.created", data))


def test_a_trace_id_is_read_from_a_w3c_traceparent_only():
    assert trace_id_of(TRACEPARENT) == "0af7651916cd43dd8448eb211c80319c"
    assert trace_id_of("garbage") is None and trace_id_of(None) is None


def test_the_leaf_is_rfc8785_canonical_and_carries_its_position():
    e = entry_from_event(ev("transfer.created", {"actor": {"subject": "u"}}))
    doc = leaf_document(e, 42, datetime(2026, 1, 2, tzinfo=UTC))
    raw = canonical(doc)
    assert raw == canonical(dict(reversed(list(doc.items()))))
    parsed = json.loads(raw)
    assert parsed["seq"] == 42 and list(parsed) == sorted(parsed)
    assert parsed["occurred_at"] == "2026-01-02T03:04:05.678901Z"


@pytest.mark.parametrize(
    "doc",
    [
        {"b": 1, "a": [None, True, False, -7, 2**53 - 1], "c": {"z": "", "y": "x"}},
        {"s": 'quote " backslash \\ slash / tab \t nl \n cr \r bs \b ff \f nul \x00 us \x1f'},
        {"s": "del \x7f é € 😀 \u2028 \u2029 \ufeff", "ünï": 1},
        {"f": 1.0, "g": 1e21, "h": 0.1},
        {"delegation": [{"sub": "agent", "€": 1}], "nested": [[1, [2, {"k": None}]]]},
    ],
)
def test_the_fast_canonical_form_is_byte_identical_to_rfc8785(doc):
    import rfc8785

    assert canonical(doc) == rfc8785.dumps(doc)


def test_numbers_json_cannot_carry_exactly_are_refused():
    with pytest.raises(InvalidAuditEvent):
        canonical({"big": 2**60})


def test_the_leaf_of_an_entry_is_its_rfc8785_document():
    import rfc8785

    from clearway.audit.domain import canonical_leaf

    e = entry_from_event(
        ev("transfer.created", {"actor": {"subject": "ü", "delegation": [{"b": 1, "a": "\n"}]}})
    )
    when = datetime(2026, 1, 2, tzinfo=UTC)
    assert canonical_leaf(e, 3, when) == rfc8785.dumps(leaf_document(e, 3, when))
