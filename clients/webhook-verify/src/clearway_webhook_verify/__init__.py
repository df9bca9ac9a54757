"""Verify Clearway webhooks: signature, timestamp window and replay.

Standard Webhooks (https://www.standardwebhooks.com/): the signed content is
``"{webhook-id}.{webhook-timestamp}.{body}"``, HMAC-SHA256 keyed with the
base64 part of a ``whsec_`` secret; ``webhook-signature`` holds one or more
space-separated ``v1,<base64>`` signatures. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
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
]

PREFIX = "whsec_"
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
    pass


class SeenIdStore(Protocol):
    """Remembers webhook ids; ``add`` returns False when the id was already seen."""

    def add(self, webhook_id: str, expires_at: float) -> bool: ...


class InMemorySeenIds:
    """A process-local seen-id store (use a shared one, e.g. Redis SET NX, across processes)."""

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


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    try:
        return base64.b64decode(secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret)
    except (binascii.Error, ValueError) as e:
        raise ValueError("a secret is whsec_ followed by base64") from e


class Verifier:
    """Checks a delivery against any of ``secrets`` (several during a rotation)."""

    def __init__(
        self,
        secrets: str | Sequence[str],
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        seen_ids: SeenIdStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = [_key(s) for s in ([secrets] if isinstance(secrets, str) else secrets)]
        if not self._keys:
            raise ValueError("give at least one secret")
        self.tolerance_s = tolerance_s
        self.seen_ids = seen_ids if seen_ids is not None else InMemorySeenIds(clock)
        self._clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Any:
        """Return the parsed JSON body of a genuine, fresh, first-seen delivery; raise otherwise."""
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
        expected = [
            base64.b64encode(hmac.new(k, content, hashlib.sha256).digest()) for k in self._keys
        ]
        if not any(_matches(sig, expected) for sig in sigs.split(" ")):
            raise InvalidSignature("no matching signature")
        # Remember the id past the window: a replay after that fails the timestamp check.
        if not self.seen_ids.add(msg_id, now + 2 * self.tolerance_s):
            raise ReplayedMessage(f"webhook-id {msg_id} was already received")
        return json.loads(body)


def _matches(signature: str, expected: Iterable[bytes]) -> bool:
    version, _, value = signature.partition(",")
    if version != "v1":
        return False
    given = value.encode()
    return any(hmac.compare_digest(given, e) for e in expected)
