"""Pure webhook rules: ids, dispatch states, the retry schedule, the circuit breaker,
signing, subscriptions.

Signing follows Standard Webhooks (https://www.standardwebhooks.com/, spec
``spec/standard-webhooks.md``, "Signature scheme"): the signed content is
``"{webhook-id}.{webhook-timestamp}.{body}"``; ``v1,<base64 HMAC-SHA256>`` keyed
with the base64 part of a ``whsec_`` secret, and, for endpoints that opted in,
``v1a,<base64 Ed25519 signature>`` by the service's Ed25519 key (in the HSM: see
:mod:`clearway.webhooks.v1a`) whose ``whpk_`` public keys partners hold.
``webhook-signature`` lists them space-separated (one per active secret or key
version; several during a rotation).
"""

from __future__ import annotations

import base64
import enum
import fnmatch
import hashlib
import hmac
import itertools
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clearway.shared.backoff import Backoff
from clearway.shared.versions import INITIAL_VERSION, upgrade

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
PUBLIC_KEY_PREFIX = "whpk_"
#: Ed25519 signatures of the signed content, one per live key version (v1a).
V1aSigner = Callable[[bytes], Sequence[bytes]]
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


#: Bounds of a partner's own secret (decoded bytes): 192 bits at least, like the
#: platform's 256-bit ones; at most a SHA-256 block (RFC 2104 §3 hashes longer keys).
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64


class InvalidSecret(WebhookError):
    """A partner-supplied secret the platform refuses; the message never holds the value."""


def check_secret(secret: str) -> str:
    """A partner's own ``whsec_`` secret (ADR 0049), in the format the platform issues:
    the prefix, then canonical padded base64 (RFC 4648 §4) of 24 to 64 random bytes.
    Values that are plainly not random (one repeated byte, few distinct bytes, a
    counting sequence) are refused: an HMAC key is only as strong as its entropy."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret(f"must start with {SECRET_PREFIX}")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise InvalidSecret(f"must be {SECRET_PREFIX} followed by base64") from None
    if base64.b64encode(key).decode() != encoded:
        raise InvalidSecret("must be canonical padded base64")
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise InvalidSecret(
            f"must decode to {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes"
            " (e.g. openssl rand -base64 32)"
        )
    steps = {(b - a) % 256 for a, b in itertools.pairwise(key)}
    if len(set(key)) < len(key) // 2 or len(steps) == 1:
        raise InvalidSecret("is not random enough; generate one with openssl rand -base64 32")
    return secret


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the base64 part after the prefix)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """What every signature covers: ``{webhook-id}.{webhook-timestamp}.{body}``."""
    return f"{msg_id}.{timestamp}.".encode() + body


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64 HMAC-SHA256>`` signature."""
    content = signed_content(msg_id, timestamp, body)
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signature_header(
    keys: Sequence[bytes],
    msg_id: str,
    timestamp: int,
    body: bytes,
    v1a: V1aSigner | None = None,
) -> str:
    """The ``webhook-signature`` value, space-separated: a ``v1`` signature per active
    HMAC key, then (an endpoint that opted in) a ``v1a`` one per live Ed25519 version."""
    sigs = [sign(k, msg_id, timestamp, body) for k in keys]
    if v1a is not None:
        content = signed_content(msg_id, timestamp, body)
        sigs += ["v1a," + base64.b64encode(s).decode() for s in v1a(content)]
    return " ".join(sigs)


@dataclass(frozen=True)
class Breaker:
    """A circuit breaker per endpoint, counted in failed attempts in a row
    (:meth:`counts`: the endpoint down, hanging or overloaded).

    Below ``threshold`` the endpoint is closed (delivered to as usual). At
    ``threshold`` it opens: the endpoint is paused for ``cooldown_s``, doubling
    with each further failure up to ``max_cooldown_s``; its messages stay
    pending. When the pause is over it is half-open: one message at a time is
    tried (the probe); a success closes it, a failure opens it again.
    """

    threshold: int = 5
    cooldown_s: float = 30.0
    max_cooldown_s: float = 600.0

    @staticmethod
    def counts(outcome: Outcome, status_code: int | None) -> bool:
        """Whether an attempt counts against the endpoint: it is unreachable or hanging
        (timeout, connection error, refused, an answer that never completed: pass
        ``status_code=None``) or says it is overloaded (502, 503, 504).
        A quick 4xx or 500 is about the message, not the endpoint: it neither counts
        nor resets the count (the message's own schedule deals with it)."""
        if outcome not in (Outcome.FAILURE, Outcome.REFUSED):
            return False
        return status_code is None or status_code in (502, 503, 504)

    def is_open(self, failures: int) -> bool:
        return failures >= self.threshold

    def pause(self, failures: int) -> float | None:
        """How long the endpoint pauses after its ``failures``-th failure in a row."""
        if failures < self.threshold:
            return None
        return min(self.max_cooldown_s, self.cooldown_s * 2 ** min(failures - self.threshold, 30))


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


def fair_shares(
    endpoints: Sequence[tuple[str, str]], budget: int, room: Mapping[str, int]
) -> dict[str, int]:
    """Split a claim of ``budget`` messages fairly: tenants take turns one message at a
    time, each tenant's endpoints take turns within its share, and no endpoint gets
    more than its ``room``. ``endpoints`` are ``(endpoint_id, tenant)``, the ones
    served least recently first; the result maps endpoint id to a quota."""
    turns: dict[str, list[str]] = {}
    for endpoint_id, tenant in endpoints:
        if room.get(endpoint_id, 0) > 0:
            turns.setdefault(tenant, []).append(endpoint_id)
    shares: dict[str, int] = {}
    while budget > 0 and turns:
        for tenant in list(turns):
            queue = turns[tenant]
            endpoint_id = queue.pop(0)
            shares[endpoint_id] = shares.get(endpoint_id, 0) + 1
            budget -= 1
            if shares[endpoint_id] < room[endpoint_id]:
                queue.append(endpoint_id)
            if not queue:
                del turns[tenant]
            if budget == 0:
                break
    return shares


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
    """What goes on the wire for one message (the body is identical on every attempt, and
    it is what the signatures cover)."""

    body: bytes

    @classmethod
    def for_event(
        cls,
        event_id: str,
        event_type: str,
        timestamp: str,
        data: Mapping[str, Any],
        api_version: str = INITIAL_VERSION,
    ) -> Delivery:
        """The payload of an event for an endpoint pinned to ``api_version``: event data
        keeps the first dated version's shapes, the version steps bring it up to the
        endpoint's (docs/design.md §10)."""
        rendered = upgrade(data, api_version)
        payload = {
            "type": event_type,
            "timestamp": timestamp,
            "event_id": event_id,
            "data": rendered,
        }
        return cls(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
