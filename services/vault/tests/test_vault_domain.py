"""Pure vault rules: card checks, brands, BIN, tokens and fingerprints."""

from __future__ import annotations

from datetime import date

import pytest

from clearway.vault.domain import (
    TOKEN,
    InvalidCard,
    bin_of,
    brand_of,
    check_expiry,
    fingerprint,
    new_card,
    new_token,
    normalise_number,
)

TODAY = date(2026, 5, 17)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4111111111111111", "visa"),
        ("4222222222222", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", None),  # Discover: not supported
        ("3530111333300000", None),  # JCB: not supported
    ],
)
def test_brands_by_prefix_and_length(number, brand):
    assert brand_of(number) == brand


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("4111111111111112", "Luhn"),
        ("4111 1111", "13 to 19"),
        ("41111111111111111111", "13 to 19"),
        ("4111x1111y1111z1111", "digits"),
        ("6011111111111117", "unsupported card brand"),
    ],
)
def test_refused_numbers_name_the_number_field_and_never_echo_it(text, why):
    with pytest.raises(InvalidCard) as e:
        normalise_number(text)
    assert e.value.field == "number" and why in e.value.reason
    assert text not in str(e.value)


def test_grouped_numbers_are_accepted():
    assert normalise_number("4111 1111-1111 1111") == "4111111111111111"


def test_a_card_is_valid_through_its_expiry_month():
    check_expiry(5, 2026, TODAY)
    with pytest.raises(InvalidCard) as e:
        check_expiry(4, 2026, TODAY)
    assert e.value.field == "exp_year"
    with pytest.raises(InvalidCard) as e:
        check_expiry(13, 2030, TODAY)
    assert e.value.field == "exp_month"


def test_bin_is_eight_digits_for_sixteen_digit_cards_and_six_otherwise():
    assert bin_of("4111111111111111") == "41111111"
    assert bin_of("378282246310005") == "378282"


def test_tokens_hold_no_digits_so_they_never_look_like_card_numbers():
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(TOKEN.fullmatch(t) and not any(c.isdigit() for c in t) for t in tokens)


def test_fingerprints_are_keyed_and_bound_to_the_tenant():
    key = b"k" * 32
    same = fingerprint(key, "ten_a", "4111111111111111")
    assert same == fingerprint(key, "ten_a", "4111111111111111")
    assert same != fingerprint(key, "ten_b", "4111111111111111")
    assert same != fingerprint(b"x" * 32, "ten_a", "4111111111111111")
    assert "4111" not in same


def test_new_card_describes_the_card_without_its_number():
    card, digits = new_card(
        "ten_a", "4111 1111 1111 1111", 12, 2030, fingerprint_key=b"k" * 32, today=TODAY
    )
    assert digits == "4111111111111111"
    assert (card.brand, card.bin, card.last4) == ("visa", "41111111", "1111")
    assert digits not in repr(card)
