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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
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


def test_a_processed_webhook_id_is_refused_as_a_replay_by_a_pluggable_store():
    secret = generate_secret()
    seen = InMemorySeenIds()
    with Verifier(secret, seen_ids=seen).receive(
        BODY, clearway_headers([secret], msg_id="msg_3")
    ) as event:
        assert event["type"] == "transfer.settled"
    with pytest.raises(ReplayedMessage):
        Verifier(secret, seen_ids=seen).verify(BODY, clearway_headers([secret], msg_id="msg_3"))


def test_an_id_whose_handler_failed_is_accepted_again():
    secret = generate_secret()
    verifier = Verifier(secret)
    with pytest.raises(RuntimeError):
        with verifier.receive(BODY, clearway_headers([secret], msg_id="msg_5")):
            raise RuntimeError("the partner's database is down")
    # Clearway retries (fresh timestamp, same webhook-id): not a replay
    with verifier.receive(BODY, clearway_headers([secret], msg_id="msg_5")) as event:
        assert event["data"]["amount"] == 100
    with pytest.raises(ReplayedMessage):
        verifier.verify(BODY, clearway_headers([secret], msg_id="msg_5"))
    # the two-phase form: verify, handle, then mark
    assert verifier.verify(BODY, clearway_headers([secret], msg_id="msg_6"))
    verifier.processed("msg_6")
    with pytest.raises(ReplayedMessage):
        verifier.verify(BODY, clearway_headers([secret], msg_id="msg_6"))


def key_pair() -> tuple[Ed25519PrivateKey, str]:
    """An Ed25519 key in memory (the service's lives in the HSM) and its whpk_ form."""
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, "whpk_" + base64.b64encode(raw).decode()


def v1a_signer(*keys: Ed25519PrivateKey):  # type: ignore[no-untyped-def]
    return lambda content: [k.sign(content) for k in keys]


def v1a_headers(private: Ed25519PrivateKey, msg_id: str = "msg_7") -> dict[str, str]:
    ts = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header([], msg_id, ts, BODY, v1a_signer(private)),
    }


def test_v1a_signatures_verify_with_ed25519_per_the_spec():
    # standardwebhooks (Python, 1.1) verifies only v1: v1a is checked with cryptography,
    # as the spec defines it: Ed25519 over "{id}.{timestamp}.{body}", base64, "v1a," prefix
    private, whpk = key_pair()
    headers = v1a_headers(private)
    version, _, value = headers["webhook-signature"].partition(",")
    assert version == "v1a"
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(whpk.removeprefix("whpk_")))
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + BODY
    public.verify(base64.b64decode(value), content)  # raises if wrong
    assert Verifier(whpk).verify(BODY, headers)["type"] == "transfer.settled"
    with pytest.raises(InvalidSignature):
        Verifier(whpk).verify(BODY.replace(b"100", b"900"), headers)
    with pytest.raises(InvalidSignature):
        Verifier(key_pair()[1]).verify(BODY, headers)


def test_v1_and_v1a_side_by_side_each_receiver_checks_what_it_holds():
    secret, (private, whpk) = generate_secret(), key_pair()
    ts = int(time.time())
    sig = signature_header([secret_key(secret)], "msg_8", ts, BODY, v1a_signer(private))
    headers = {"webhook-id": "msg_8", "webhook-timestamp": str(ts), "webhook-signature": sig}
    assert [s.split(",")[0] for s in headers["webhook-signature"].split(" ")] == ["v1", "v1a"]
    Webhook(secret).verify(BODY, headers)  # the official library skips v1a and checks v1
    Verifier(secret).verify(BODY, headers)
    Verifier(whpk).verify(BODY, headers)


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
