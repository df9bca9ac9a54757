"""Pure webhook rules: ids, dispatch states, the retry schedule, signing, subscriptions.

Signing follows Standard Webhooks (https://www.standardwebhooks.com/, spec
``spec/standard-webhooks.md``): ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{webhook-id}.{webhook-timestamp}.{body}">`` keyed with the base64 part of a
``whsec_`` secret; several space-separated signatures during a rotation.
"""

from __future__ import annotations

import base64
import enum
import fnmatch
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clearway.shared.backoff import Backoff

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
#: The published retry schedule: delay before attempt N+1 after attempt N failed
#: (attempt 1 goes out immediately). 8 attempts over about 28 hours.
RETRY_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.2
_NS = uuid.UUID("5b1e3a0c-9d7f-5c2e-8a41-0f6d2b7c9e13")
_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$")


class Status(enum.StrEnum):
    """Where a message is: waiting for an attempt, or in one of its final states."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # dead-lettered after the last attempt (or 410)
    SKIPPED = "skipped"  # the endpoint was disabled; replayable


class Outcome(enum.StrEnum):
    """What one attempt came to."""

    SUCCESS = "success"
    FAILURE = "failure"  # non-2xx (3xx included), timeout, connection error, garbage
    THROTTLED = "throttled"  # 429: the receiver asked us to slow down
    GONE = "gone"  # 410: the receiver asked us to stop; disables the endpoint
    REFUSED = "refused"  # the SSRF guard refused the address at connect time


class WebhookError(Exception):
    """Base of the domain's errors."""


class InvalidSubscription(WebhookError):
    def __init__(self, pattern: str, reason: str) -> None:
        super().__init__(f"event type {pattern!r} {reason}")
        self.pattern = pattern
        self.reason = reason


def new_endpoint_id() -> str:
    return f"ep_{uuid.uuid4().hex}"


def new_replay_id() -> str:
    return f"rpl_{uuid.uuid4().hex}"


def message_id(endpoint_id: str, event_id: str) -> str:
    """Deterministic ``msg_`` id: one message per (event, endpoint), whatever re-creates it."""
    name = endpoint_id + "\x1f" + event_id
    return f"msg_{uuid.uuid5(_NS, name).hex}"


def generate_secret() -> str:
    """A fresh ``whsec_`` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the base64 part after the prefix)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signature_header(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per active secret, space-separated."""
    return " ".join(sign(k, msg_id, timestamp, body) for k in keys)


def retry_policy(schedule: Sequence[float] = RETRY_SCHEDULE, jitter: float = JITTER) -> Backoff:
    """The published schedule as the kit's :class:`Backoff`: ``delay(n)`` is the wait after
    failed attempt ``n`` (1-based), ``schedule[n]`` ± ``jitter``, ``None`` after the last.

    ``schedule[0]`` is the wait before attempt 1 (immediate), so the steps between
    attempts are ``schedule[1:]``; a receiver's ``Retry-After`` is a floor, capped at
    the schedule's longest step.
    """
    return Backoff.from_schedule(
        tuple(schedule[1:]),
        jitter=jitter,
        max_attempts=len(schedule),
        retry_after_cap=max(schedule),
    )


def classify(status_code: int) -> Outcome:
    """2xx succeeds; 410 disables; 429 throttles; everything else (3xx too) fails."""
    if 200 <= status_code < 300:
        return Outcome.SUCCESS
    if status_code == 410:
        return Outcome.GONE
    if status_code == 429:
        return Outcome.THROTTLED
    return Outcome.FAILURE


def check_subscriptions(patterns: Iterable[str], known_types: Iterable[str]) -> list[str]:
    """Validate event type patterns (``transfer.settled``, ``transfer.*``, ``*``)."""
    known = sorted(set(known_types))
    out: list[str] = []
    for p in patterns:
        if not _PATTERN.match(p):
            raise InvalidSubscription(p, "is not an event type or a 'domain.*' wildcard")
        if not any(matches(p, t) for t in known):
            raise InvalidSubscription(p, "matches no known event type (see /v1/event-types)")
        if p not in out:
            out.append(p)
    if not out:
        raise InvalidSubscription("", "list is empty")
    return out


def matches(pattern: str, event_type: str) -> bool:
    """Whether a subscription pattern covers ``event_type`` (``*`` spans dots)."""
    return pattern == event_type or fnmatch.fnmatchcase(event_type, pattern)


def subscribed(patterns: Iterable[str], event_type: str) -> bool:
    return any(matches(p, event_type) for p in patterns)


@dataclass(frozen=True)
class Delivery:
    """What goes on the wire for one message (the body is identical on every attempt)."""

    body: bytes

    @classmethod
    def for_event(
        cls, event_id: str, event_type: str, timestamp: str, data: Mapping[str, Any]
    ) -> Delivery:
        payload = {"type": event_type, "timestamp": timestamp, "event_id": event_id, "data": data}
        return cls(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
