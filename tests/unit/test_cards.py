"""The one card-number detector (docs/design.md §9): every format a card number was
smuggled in (issue 11), and the ids and numbers that must never trip it."""

from __future__ import annotations

import json
import time

import pytest

from clearway.shared.cards import (
    card_locations,
    find_cards,
    first_card_location,
    is_card_number,
    luhn_valid,
    mask_cards,
    mask_cards_in,
)

VISA = "4111111111111111"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
JWT = (
    "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9"
    ".eyJzdWIiOiJjbGllbnQtMSIsInNjb3BlIjoicGF5bWVudHM6aW5pdGlhdGUifQ"
    ".MEUCIQDx7v-fake_signature4111111111111111"
)


@pytest.mark.parametrize(
    "digits", ["4242424242424242", AMEX, MASTERCARD, "4222222222222", "4000000000000000006"]
)
def test_well_known_test_card_numbers_pass_the_luhn_check(digits: str) -> None:
    assert luhn_valid(digits) and is_card_number(digits)


@pytest.mark.parametrize(
    "digits", ["1234567812345678", "4242424242424241", "", "4242 4242", "\uff14\uff12"]
)
def test_wrong_check_digits_separators_and_non_ascii_digits_fail_the_luhn_check(
    digits: str,
) -> None:
    assert not luhn_valid(digits)


def _fullwidth(digits: str) -> str:
    return "".join(chr(0xFF10 + int(d)) for d in digits)


def _arabic_indic(digits: str) -> str:
    return "".join(chr(0x0660 + int(d)) for d in digits)


@pytest.mark.parametrize(
    "text",
    [
        VISA,
        json.loads('"card \\u0034111111111111111"'),  # a JSON escape, once decoded
        "card \\u0034111111111111111",  # still escaped: JSON inside a JSON string
        f"tok_{VISA}",
        f"card{VISA}x",
        "4111.1111.1111.1111",
        "4111  1111  1111  1111",
        "4111 - 1111 - 1111 - 1111",
        "4111/1111/1111/1111",
        "4111_1111_1111_1111",
        "4111-1111.1111 1111",
        "4111\t1111\n1111\u00a01111",
        "4111,1111,1111,1111",
        _fullwidth(VISA),
        _arabic_indic(VISA),
        "%34%31%31%31111111111111",
        "&#52;111111111111111",
        f"000{VISA}",
        "pay 4111 1111 1111 1111 123 exp 12/29",
    ],
)
def test_every_format_of_a_card_number_is_found_as_bare_digits(text: str) -> None:
    assert find_cards(text) == [VISA]


def test_amex_and_mastercard_groupings_are_found() -> None:
    assert find_cards(f"3782 822463 10005 and {MASTERCARD}") == [AMEX, MASTERCARD]


@pytest.mark.parametrize(
    "text",
    [
        "550e8400-e29b-41d4-a716-446655440000",  # UUID (a 15-digit run across a dash)
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # traceparent
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # SHA-256
        "d4e2c1b5a3f70811234567890123456a",  # hex id with a Luhn-valid 16-digit run
        "4bf92f3577b34da6a3ce929d0e0e4736",
        JWT,
        f"Bearer {JWT}",
        "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDDbWj1KE=",  # a webhook signature
        "1712345678901",  # epoch milliseconds (Luhn-valid)
        "1718000000000000000",  # epoch nanoseconds
        "2026-05-01T10:00:00.123456+00:00",
        "idem-2026-05-01-000123",
        "tr_01HZX3Q4ZP8N2W6Y9V7T5R3M1K",
        "1234567812345678",  # fails Luhn
        f"{VISA}0",  # 17 digits glued: not a card number (and fails Luhn)
        "12500",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0.6099.28",
        "[PAN ****1111]",
    ],
)
def test_ids_timestamps_amounts_signatures_and_tokens_are_not_card_numbers(text: str) -> None:
    assert find_cards(text) == []
    assert mask_cards(text) == text


def test_a_card_number_is_masked_to_its_last_four_digits_wherever_it_sits() -> None:
    assert mask_cards(f"src tok_{VISA} uuid 550e8400-e29b-41d4-a716-446655440000") == (
        "src tok_[PAN ****1111] uuid 550e8400-e29b-41d4-a716-446655440000"
    )
    assert mask_cards(_fullwidth(VISA)) == "[PAN ****1111]"


def test_locations_name_the_field_and_never_the_number() -> None:
    doc = {
        "amount": 12500,
        "metadata": {"pan": "4111  1111  1111  1111", VISA: "a key"},
        "lines": [{"x": "ok"}, {"x": f"pay {VISA}"}],
        "n": int(VISA),
        "ok": True,
        "none": None,
    }
    assert list(card_locations(doc)) == [
        ("metadata", "pan"),
        ("metadata",),  # the key itself holds the number: the object around it
        ("lines", 1, "x"),
        ("n",),
    ]
    assert first_card_location({"id": "tr_1", "amount": 12500, "ok": True}) is None


def test_a_masked_copy_of_a_document_keeps_its_shape() -> None:
    doc = {"d": f"card {VISA}", "n": int(VISA), "k": [{VISA: 1}], "amount": 5}
    assert mask_cards_in(doc) == {
        "d": "card [PAN ****1111]",
        "n": "[PAN ****1111]",
        "k": [{"[PAN ****1111]": 1}],
        "amount": 5,
    }


def test_nesting_deeper_than_the_walk_is_reported_not_recursed() -> None:
    doc: object = "x"
    for _ in range(200):
        doc = [doc]
    assert first_card_location(doc) == (0,) * 64


def test_the_check_is_linear_and_cheap_on_ordinary_and_hostile_input() -> None:
    ordinary = {
        "amount": 12500,
        "currency": "EUR",
        "source": "acct_1JqB3cPayer",
        "destination": "acct_9xZpQPayee",
        "description": "Invoice 2026-1142 for order 7731 of 2026-05-01",
        "metadata": {f"k{i}": f"value {i} 2026-05-01T10:00:00Z" for i in range(20)},
    }
    hostile = "4 " * 50_000  # one long run of one-digit groups: 100 KB
    started = time.perf_counter()
    for _ in range(1000):
        assert first_card_location(ordinary) is None
    per_doc = (time.perf_counter() - started) / 1000
    started = time.perf_counter()
    find_cards(hostile)
    # Bounds generous enough for a loaded CI machine; a quadratic scan takes minutes.
    assert time.perf_counter() - started < 5.0
    assert per_doc < 0.005
