"""Verify Clearway webhooks: signature, timestamp window and replay of processed ids.

Standard Webhooks (https://www.standardwebhooks.com/): the signed content is
``"{webhook-id}.{webhook-timestamp}.{body}"``; ``webhook-signature`` holds one or
more space-separated signatures: ``v1,<base64 HMAC-SHA256>`` keyed with the
base64 part of a ``whsec_`` secret, and, for endpoints that opted in,
``v1a,<base64 Ed25519>`` checked with Clearway's ``whpk_`` public keys, published
at ``GET /v1/webhooks/signing-keys`` (:func:`signing_keys`). During a key
rotation a delivery carries a ``v1a`` signature by the old key and one by the new,
so a verifier holding either key accepts it. HMAC needs only the standard
library; ``v1a`` needs ``cryptography`` (the ``ed25519`` extra).

Replay protection has two parts. The timestamp window refuses a captured
request replayed later than ``tolerance_s``. Inside the window, the seen-id
store refuses an id *that was processed successfully*: an id is remembered only
once the partner's handler succeeded (:meth:`Verifier.receive`, or
:meth:`Verifier.verify` then :meth:`Verifier.processed`), so Clearway's retry of
a delivery the partner failed to process (it answered 5xx) is accepted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

__all__ = [
    "InMemorySeenIds",
    "InvalidSignature",
    "MissingHeaders",
    "ReplayedMessage",
    "SeenIdStore",
    "TimestampOutOfWindow",
    "VerificationError",
    "Verifier",
    "signing_keys",
]

PREFIX = "whsec_"
PUBLIC_KEY_PREFIX = "whpk_"
DEFAULT_TOLERANCE_S = 300


class VerificationError(Exception):
    """The request is not a genuine, fresh Clearway webhook: answer 400 and drop it."""


class MissingHeaders(VerificationError):
    pass


class InvalidSignature(VerificationError):
    pass


class TimestampOutOfWindow(VerificationError):
    pass


class ReplayedMessage(VerificationError):
    """This ``webhook-id`` was already processed successfully: answer 2xx, do nothing."""


class SeenIdStore(Protocol):
    """Remembers the webhook ids that were processed successfully.

    ``add`` returns False when the id was already there; ``contains`` says whether
    it is (and not expired).
    """

    def add(self, webhook_id: str, expires_at: float) -> bool: ...

    def contains(self, webhook_id: str) -> bool: ...


class InMemorySeenIds:
    """A process-local seen-id store (use a shared one, e.g. Redis ``SET NX EX`` and
    ``EXISTS``, across processes)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def add(self, webhook_id: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            if self._seen.get(webhook_id, 0) > now:
                return False
            self._seen[webhook_id] = expires_at
            return True

    def contains(self, webhook_id: str) -> bool:
        with self._lock:
            return self._seen.get(webhook_id, 0) > self._clock()


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    try:
        return base64.b64decode(secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret)
    except (binascii.Error, ValueError) as e:
        raise ValueError("a secret is whsec_ followed by base64") from e


def _public_key(whpk: str) -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "v1a (Ed25519) signatures need cryptography: "
            "pip install 'clearway-webhook-verify[ed25519]'"
        ) from e
    try:
        raw = base64.b64decode(whpk[len(PUBLIC_KEY_PREFIX) :])
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as e:
        raise ValueError("a public key is whpk_ followed by base64 of 32 bytes") from e


def signing_keys(key_set: Mapping[str, Any]) -> list[str]:
    """The ``whpk_`` public keys of a ``GET /v1/webhooks/signing-keys`` document, for
    :class:`Verifier`. Fetch it again now and then (daily): a new key appears there
    when Clearway rotates, and the old one goes when it is retired."""
    return [
        k["whpk"]
        for k in key_set.get("keys", [])
        if str(k.get("whpk", "")).startswith(PUBLIC_KEY_PREFIX)
    ]


class Verifier:
    """Checks a delivery against any of ``secrets``: ``whsec_`` secrets (v1) and
    ``whpk_`` public keys (v1a); several during a rotation.

    ``remember_s`` is how long a processed id is refused as a replay (default
    twice the window: by then a replay fails the timestamp check anyway).
    """

    def __init__(
        self,
        secrets: str | Sequence[str],
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        seen_ids: SeenIdStore | None = None,
        remember_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        given = [secrets] if isinstance(secrets, str) else list(secrets)
        if not given:
            raise ValueError("give at least one secret or public key")
        self._keys = [_key(s) for s in given if not s.startswith(PUBLIC_KEY_PREFIX)]
        self._public = [_public_key(s) for s in given if s.startswith(PUBLIC_KEY_PREFIX)]
        self.tolerance_s = tolerance_s
        self.remember_s = 2 * tolerance_s if remember_s is None else remember_s
        self.seen_ids = seen_ids if seen_ids is not None else InMemorySeenIds(clock)
        self._clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Any:
        """The parsed JSON body of a genuine, fresh delivery whose id was not processed yet;
        raise otherwise. Nothing is remembered: call :meth:`processed` once handled, or
        use :meth:`receive`, which does both."""
        h = {k.lower(): v for k, v in headers.items()}
        msg_id, ts, sigs = (
            h.get("webhook-id"),
            h.get("webhook-timestamp"),
            h.get("webhook-signature"),
        )
        if not msg_id or not ts or not sigs:
            raise MissingHeaders("webhook-id, webhook-timestamp and webhook-signature are required")
        try:
            timestamp = int(ts)
        except ValueError:
            raise TimestampOutOfWindow("webhook-timestamp is not an integer") from None
        now = self._clock()
        if timestamp < now - self.tolerance_s:
            raise TimestampOutOfWindow("message timestamp too old")
        if timestamp > now + self.tolerance_s:
            raise TimestampOutOfWindow("message timestamp too new")
        content = f"{msg_id}.{timestamp}.".encode() + body
        if not self._signed(content, sigs.split(" ")):
            raise InvalidSignature("no matching signature")
        if self.seen_ids.contains(msg_id):
            raise ReplayedMessage(f"webhook-id {msg_id} was already processed")
        return json.loads(body)

    def processed(self, webhook_id: str) -> None:
        """Remember ``webhook_id`` as processed: later copies are :class:`ReplayedMessage`."""
        self.seen_ids.add(webhook_id, self._clock() + self.remember_s)

    @contextlib.contextmanager
    def receive(self, body: bytes, headers: Mapping[str, str]) -> Iterator[Any]:
        """Verify, hand the event to the ``with`` block, and remember the id only if the
        block finished without an exception (a failed handler lets the retry in)."""
        event = self.verify(body, headers)
        yield event
        webhook_id = next(v for k, v in headers.items() if k.lower() == "webhook-id")
        self.processed(webhook_id)

    def _signed(self, content: bytes, signatures: Iterable[str]) -> bool:
        expected = [
            base64.b64encode(hmac.new(k, content, hashlib.sha256).digest()) for k in self._keys
        ]
        for sig in signatures:
            version, _, value = sig.partition(",")
            if version == "v1" and any(hmac.compare_digest(value.encode(), e) for e in expected):
                return True
            if version == "v1a" and self._public and self._ed25519(content, value):
                return True
        return False

    def _ed25519(self, content: bytes, value: str) -> bool:
        from cryptography.exceptions import InvalidSignature as BadSignature

        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        for key in self._public:
            try:
                key.verify(raw, content)
                return True
            except BadSignature:
                continue
        return False
