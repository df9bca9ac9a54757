"""Signatures interoperate with the official Standard Webhooks library, both ways."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from clearway_webhook_verify import (
    InMemorySeenIds,
    InvalidSignature,
    MissingHeaders,
    ReplayedMessage,
    TimestampOutOfWindow,
    Verifier,
)
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from clearway.webhooks.domain import generate_secret, secret_key, signature_header

BODY = b'{"type":"transfer.settled","data":{"amount":100}}'


def clearway_headers(
    secrets: list[str], msg_id: str = "msg_1", ts: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header([secret_key(s) for s in secrets], msg_id, ts, BODY),
    }


def test_the_official_library_verifies_what_clearway_signs():
    secret = generate_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert Webhook(secret).verify(BODY, clearway_headers([secret]))["data"]["amount"] == 100


def test_clearway_verifier_accepts_what_the_official_library_signs():
    secret = generate_secret()
    now = datetime.now(UTC)
    signature = Webhook(secret).sign("msg_2", now, BODY.decode())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    assert Verifier(secret).verify(BODY, headers)["type"] == "transfer.settled"


def test_a_tampered_body_is_refused_by_both():
    secret = generate_secret()
    headers = clearway_headers([secret])
    tampered = BODY.replace(b"100", b"900")
    with pytest.raises(InvalidSignature):
        Verifier(secret).verify(tampered, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)


@pytest.mark.parametrize("offset", [-301, 301])
def test_an_old_or_future_timestamp_is_refused(offset):
    secret = generate_secret()
    headers = clearway_headers([secret], ts=int(time.time()) + offset)
    with pytest.raises(TimestampOutOfWindow):
        Verifier(secret).verify(BODY, headers)


def test_a_replayed_webhook_id_is_refused_by_a_pluggable_store():
    secret = generate_secret()
    seen = InMemorySeenIds()
    verifier = Verifier(secret, seen_ids=seen)
    verifier.verify(BODY, clearway_headers([secret], msg_id="msg_3"))
    with pytest.raises(ReplayedMessage):
        Verifier(secret, seen_ids=seen).verify(BODY, clearway_headers([secret], msg_id="msg_3"))


def test_missing_headers_are_refused():
    with pytest.raises(MissingHeaders):
        Verifier(generate_secret()).verify(BODY, {"webhook-id": "msg_4"})


def test_during_rotation_a_receiver_holding_only_the_old_secret_still_verifies():
    old, new = generate_secret(), generate_secret()
    headers = clearway_headers([old, new])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    Verifier(old).verify(BODY, headers)
    Verifier([new], seen_ids=InMemorySeenIds()).verify(BODY, headers)
    with pytest.raises(InvalidSignature):
        Verifier(generate_secret()).verify(BODY, headers)
