"""Pure rules: fingerprints, references, key decisions, postings, retries."""

from __future__ import annotations

import re

import pytest

from clearway.transfer.domain import (
    RAIL_RETRY,
    InvalidField,
    InvalidTransition,
    KeyDecision,
    KeyState,
    Status,
    TransferRequest,
    check_transition,
    decide,
    fingerprint,
    new_transfer_id,
    reference_for,
    settlement_postings,
)


def test_the_fingerprint_ignores_field_order_and_whitespace_but_not_values():
    a = fingerprint("POST", "/v1/transfers", {"amount": 1, "currency": "EUR", "m": {"x": "1"}})
    b = fingerprint("post", "/v1/transfers", {"m": {"x": "1"}, "currency": "EUR", "amount": 1})
    assert a == b
    assert a != fingerprint("POST", "/v1/transfers", {"amount": 2, "currency": "EUR"})
    assert a != fingerprint(
        "PUT", "/v1/transfers", {"amount": 1, "currency": "EUR", "m": {"x": "1"}}
    )


def test_the_reference_is_stable_keyed_and_fits_an_iso20022_end_to_end_id():
    ref = reference_for(b"secret", "ten_a", "cli_1", "key-1")
    assert ref == reference_for(b"secret", "ten_a", "cli_1", "key-1")
    assert len(ref) <= 35 and re.fullmatch(r"[A-Z0-9]+", ref) and ref.startswith("CW")
    assert ref != reference_for(b"secret", "ten_b", "cli_1", "key-1")
    assert ref != reference_for(b"secret", "ten_a", "cli_2", "key-1")
    assert ref != reference_for(b"other", "ten_a", "cli_1", "key-1")


@pytest.mark.parametrize(
    ("state", "same", "age", "expected"),
    [
        (KeyState.COMPLETED, True, 1.0, KeyDecision.REPLAY),
        (KeyState.COMPLETED, False, 1.0, KeyDecision.MISMATCH),
        (KeyState.IN_FLIGHT, False, 1.0, KeyDecision.MISMATCH),
        (KeyState.IN_FLIGHT, True, 1.0, KeyDecision.IN_FLIGHT),
        (KeyState.IN_FLIGHT, True, 31.0, KeyDecision.RECOVER),
    ],
)
def test_a_seen_key_is_replayed_refused_waited_for_or_recovered(state, same, age, expected):
    assert decide(state, "fp", "fp" if same else "other", age, 30.0) is expected


def test_money_rules_name_the_field():
    with pytest.raises(InvalidField) as e:
        TransferRequest(amount=0, currency="EUR", source="acct_a", destination="acct_b")
    assert e.value.field == "amount"
    with pytest.raises(InvalidField) as e:
        TransferRequest(amount=True, currency="EUR", source="acct_a", destination="acct_b")
    assert e.value.field == "amount"
    with pytest.raises(InvalidField) as e:
        TransferRequest(amount=5, currency="ABC", source="acct_a", destination="acct_b")
    assert e.value.field == "currency"


def test_a_transfer_moves_pending_submitted_settled_and_cancels_only_before_submission():
    check_transition(Status.PENDING, Status.SUBMITTED)
    check_transition(Status.SUBMITTED, Status.SETTLED)
    check_transition(Status.PENDING, Status.CANCELED)
    with pytest.raises(InvalidTransition):
        check_transition(Status.SUBMITTED, Status.CANCELED)
    with pytest.raises(InvalidTransition):
        check_transition(Status.SETTLED, Status.FAILED)


def test_settlement_postings_balance():
    legs = settlement_postings("acct_a", "acct_b", 1250, "EUR")
    assert sum(p.amount for p in legs) == 0
    assert {p.leg for p in legs} == {"debit", "credit"}


def test_the_rail_retry_schedule_is_bounded_and_honours_retry_after():
    assert RAIL_RETRY.step(1) == 0.05  # attempts count from 1, as everywhere
    assert 0.04 <= (RAIL_RETRY.delay(1) or 0) <= 0.06
    assert RAIL_RETRY.delay(2, retry_after=3) == 3
    assert RAIL_RETRY.delay(2, retry_after=3600) == 10.0
    assert RAIL_RETRY.delay(8) is not None and RAIL_RETRY.delay(9) is None


def test_transfer_ids_are_prefixed_and_roughly_time_ordered():
    a, b = new_transfer_id(), new_transfer_id()
    assert a.startswith("tr_") and a[:15] <= b[:15]


def test_the_canonical_json_fast_path_writes_the_bytes_of_rfc8785():
    import rfc8785

    from clearway.transfer.domain import canonical_json

    samples = [
        {"amount": 12500, "currency": "EUR", "metadata": {"b": "2", "a": "1", "A": "0"}},
        {"description": 'quote " back\\slash \x00\x01\x1f\x7f \b\f\n\r\t', "n": None},
        {"big": 2**53 - 1, "neg": -(2**53 - 1), "t": True, "f": False, "l": [1, "x", []]},
        {"é": "ünïcode", "emoji": "\U0001f600", "\ue000": 1, "\U00010000": 2},  # full path
        {"big": 2**53 - 2, "float": 1.5},  # a float: the full path
    ]
    for body in samples:
        assert canonical_json(body) == rfc8785.dumps(body), body
