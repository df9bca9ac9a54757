"""The one redaction layer: what it masks, and what it must leave alone."""

from __future__ import annotations

import pytest

from clearway.shared.redaction import (
    SECRET_PREFIXES,
    SENSITIVE_KEYS,
    redact_text,
    redact_value,
)

VISA = "4242424242424242"
TRANSFER_ID = "tr_01J9ZK3M4N5P6Q7R8S9T0V1W2X"
EVENT_ID = "evt_4bf92f3577b34da6a3ce929d0e0e4736"
CORRELATION_ID = "corr_0af7651916cd43dd8448eb211c80319c"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
UUID = "123e4567-e89b-12d3-a456-426614174000"
JWT = (
    "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9"
    ".eyJzdWIiOiJjbGllbnQtMSIsInNjb3BlIjoicGF5bWVudHM6aW5pdGlhdGUifQ"
    ".MEUCIQDx7v-fake_signature"
)


# --- PANs in text (the detector itself: test_cards.py) --------------------------------


def test_a_plain_pan_is_masked_to_its_last_four_digits() -> None:
    assert redact_text(f"charging card {VISA} now") == "charging card [PAN ****4242] now"


def test_a_pan_written_with_spaces_is_masked() -> None:
    assert redact_text("card 4242 4242 4242 4242.") == "card [PAN ****4242]."


def test_a_luhn_valid_pan_with_dashes_is_masked_but_the_transfer_id_survives() -> None:
    text = f"transfer {TRANSFER_ID} card 5555-5555-5555-4444"

    assert redact_text(text) == f"transfer {TRANSFER_ID} card [PAN ****4444]"


def test_an_amex_number_in_its_four_six_five_grouping_is_masked() -> None:
    assert redact_text("amex 3782 822463 10005") == "amex [PAN ****0005]"


def test_a_sixteen_digit_id_that_fails_luhn_is_left_untouched() -> None:
    text = "bank reference 1234567812345678 at 1712345678901"

    assert redact_text(text) == text


def test_digits_glued_to_letters_or_an_id_prefix_are_still_a_pan() -> None:
    text = f"ref INV{VISA} source tok_{VISA}"

    assert redact_text(text) == "ref INV[PAN ****4242] source tok_[PAN ****4242]"


def test_a_pan_behind_dots_fullwidth_digits_or_an_escape_is_masked() -> None:
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in VISA)
    escaped = "\\u0034242424242424242"
    for text in ("4242.4242.4242.4242", "4242  4242  4242  4242", fullwidth, escaped):
        assert redact_text(f"card {text}") == "card [PAN ****4242]", text


# --- tokens, secrets, credentials -----------------------------------------------------


def test_a_bearer_token_is_masked_but_the_scheme_is_kept() -> None:
    assert redact_text("sent Bearer abc.DEF-123_x~y+z/== upstream") == (
        "sent Bearer [REDACTED] upstream"
    )


def test_a_jwt_on_its_own_is_masked() -> None:
    assert redact_text(f"token was {JWT}.") == "token was [REDACTED JWT]."


def test_a_webhook_secret_keeps_its_prefix_and_loses_its_value() -> None:
    text = "endpoint ep_123 secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw rotated"

    assert redact_text(text) == "endpoint ep_123 secret whsec_[REDACTED] rotated"


@pytest.mark.parametrize("prefix", SECRET_PREFIXES)
def test_every_documented_secret_prefix_is_masked(prefix: str) -> None:
    assert redact_text(f"got {prefix}Zx81kq_0-a9 ok") == f"got {prefix}[REDACTED] ok"


def test_a_client_secret_in_a_query_string_is_masked_and_the_rest_kept() -> None:
    text = "POST /oauth/token?client_id=cli_42&client_secret=s3cr3t&grant_type=client_credentials"

    assert redact_text(text) == (
        "POST /oauth/token?client_id=cli_42&client_secret=[REDACTED]&grant_type=client_credentials"
    )


def test_an_authorization_header_in_text_is_masked_whatever_its_scheme() -> None:
    assert redact_text("Authorization: Basic dXNlcjpwYXNz") == "Authorization: [REDACTED]"
    assert redact_text("authorization=Bearer abc") == "authorization=[REDACTED]"


def test_quoted_sensitive_values_in_json_text_are_masked_entirely() -> None:
    text = '{"password": "correct horse", "client_secret": "x", "currency": "EUR"}'

    assert redact_text(text) == (
        '{"password": "[REDACTED]", "client_secret": "[REDACTED]", "currency": "EUR"}'
    )


@pytest.mark.parametrize("key", sorted(SENSITIVE_KEYS))
def test_every_sensitive_key_written_as_key_equals_value_is_masked(key: str) -> None:
    assert redact_text(f"{key}=hunter2\nnext") == f"{key}=[REDACTED]\nnext"


def test_headers_printed_as_an_asgi_list_of_byte_pairs_are_masked() -> None:
    text = "[(b'authorization', b'Basic dXNlcjpwYXNz'), (b'cookie', b'sid=1'), (b'host', b'x')]"

    assert redact_text(text) == (
        "[(b'authorization', b'[REDACTED]'), (b'cookie', b'[REDACTED]'), (b'host', b'x')]"
    )


def test_a_cookie_header_is_masked_to_the_end_of_the_line() -> None:
    assert redact_text("Cookie: sid=abc; theme=dark\nnext") == "Cookie: [REDACTED]\nnext"


def test_the_password_in_a_database_url_is_masked_and_the_user_kept() -> None:
    text = "connecting to postgresql://transfer:pa55word@db.internal:5432/clearway"

    assert redact_text(text) == (
        "connecting to postgresql://transfer:[REDACTED]@db.internal:5432/clearway"
    )


def test_an_email_keeps_its_first_character_and_its_domain() -> None:
    assert redact_text("notify jane.doe+tag@example.co.uk.") == "notify j***@example.co.uk."


def test_an_email_domain_does_not_swallow_the_prefix_of_a_following_secret() -> None:
    assert redact_text("ops@example.com.cs_live_abc") == "o***@example.com.cs_[REDACTED]"


# --- what must survive ----------------------------------------------------------------


def test_ids_uuids_trace_ids_and_correlation_ids_pass_through_intact() -> None:
    text = (
        f"{TRANSFER_ID} {EVENT_ID} msg_2 ep_3 cns_4 {CORRELATION_ID} {UUID} {TRACE_ID} "
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    )

    assert redact_text(text) == text


def test_an_all_digit_uuid_is_not_mistaken_for_a_pan() -> None:
    text = "idempotency key 42424242-4242-4242-4242-424242424242"

    assert redact_text(text) == text


def test_ordinary_prose_and_words_that_merely_contain_a_key_are_unchanged() -> None:
    text = "tokenized card for company span=3 docs_count=2 password_hash=argon2 ok"

    assert redact_text(text) == text


def test_redacting_twice_changes_nothing_more() -> None:
    text = f"card {VISA} Authorization: Bearer {JWT} whsec_abc jane@example.com Cookie: a=1; b=2"
    once = redact_text(text)

    assert redact_text(once) == once


# --- structures -----------------------------------------------------------------------


def test_an_authorization_header_in_a_dict_is_masked_whatever_its_case() -> None:
    headers = {"AUTHORIZATION": "Bearer abc", "X-Api-Key": "k", "Content-Type": "application/json"}

    assert redact_value(headers) == {
        "AUTHORIZATION": "[REDACTED]",
        "X-Api-Key": "[REDACTED]",
        "Content-Type": "application/json",
    }


def test_sensitive_keys_match_across_case_dashes_underscores_and_suffixes() -> None:
    data = {"clientSecret": 1, "Client-Secret": 2, "db_password": 3, "csrf_token": 4, "cvv": 123}

    assert redact_value(data) == dict.fromkeys(data, "[REDACTED]")


def test_nested_lists_tuples_and_dicts_are_walked_and_ids_kept() -> None:
    event = {
        "id": EVENT_ID,
        "data": {
            "transfer_id": TRANSFER_ID,
            "payer": {"email": "bob@example.com", "card": {"pan": VISA, "last4": "4242"}},
            "notes": [f"card {VISA}", ("token=abc", 7)],
        },
        "correlation_id": CORRELATION_ID,
    }

    assert redact_value(event) == {
        "id": EVENT_ID,
        "data": {
            "transfer_id": TRANSFER_ID,
            "payer": {"email": "b***@example.com", "card": {"pan": "[REDACTED]", "last4": "4242"}},
            "notes": ["card [PAN ****4242]", ("token=[REDACTED]", 7)],
        },
        "correlation_id": CORRELATION_ID,
    }


def test_header_pairs_as_asgi_sends_them_have_their_sensitive_values_masked() -> None:
    headers = [(b"authorization", b"Bearer abc"), (b"x-trace", b"card 4242424242424242")]

    assert redact_value(headers) == [
        (b"authorization", "[REDACTED]"),
        (b"x-trace", b"card [PAN ****4242]"),
    ]


def test_a_sensitive_key_hides_a_whole_nested_value() -> None:
    assert redact_value({"secret": {"kid": "k1", "value": "x"}}) == {"secret": "[REDACTED]"}


def test_redact_value_leaves_the_input_as_it_was() -> None:
    original = {"password": "x", "items": [VISA]}

    redact_value(original)

    assert original == {"password": "x", "items": [VISA]}


def test_a_self_referencing_structure_is_cut_off_instead_of_recursing_forever() -> None:
    loop: list[object] = []
    loop.append(loop)

    result = redact_value(loop)

    depth = 0
    while isinstance(result, list):
        result = result[0]
        depth += 1
    assert result == "[TRUNCATED]"
    assert depth == 32
