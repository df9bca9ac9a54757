"""Failed client authentication: throttled per (client, source address), alerting on
a distributed pattern, never a lock a stranger can trigger (docs/design.md §7).

- Each (client id, address) pair that fails more than ``free_failures`` times
  waits a kit :class:`Backoff` delay (1 s doubling to 5 min) before its next
  attempt is even checked; an attempt made while waiting counts as a failure
  too, and a success clears the pair. Failures from one address therefore never
  stop the client's own deployment, which calls from other addresses.
- An *anomaly* is failures for one client from at least ``anomaly_addresses``
  distinct addresses within ``anomaly_window_s``: a distributed guessing campaign
  no single caller can fake. It is reported once per window (``client.auth_anomaly``)
  and *guards* the client for ``guard_s``: only addresses that authenticated
  successfully within ``known_for_s`` are checked at all; the client is never
  locked for its known callers and no operator action is needed to undo it.
- Unknown client ids are tracked exactly like known ones, so the throttle's
  behaviour reveals nothing about which ids exist.

State is per process (bounded): with several replicas an attacker's budget grows
with their number, which the backoff keeps small.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from clearway.shared.backoff import Backoff

#: Delay before a failing (client, address) pair is checked again.
FAILURE_BACKOFF = Backoff(base=1.0, cap=300.0, factor=2.0, jitter=0.0)
_MAX_PAIRS = 100_000
_MAX_CLIENTS = 10_000
_MAX_EVENTS_PER_CLIENT = 1_000


@dataclass(frozen=True)
class Anomaly:
    """A distributed failure pattern against one client."""

    client_id: str
    addresses: int
    failures: int
    window_s: float
    guard_s: float


@dataclass
class _Pair:
    failures: int = 0
    blocked_until: float = 0.0


@dataclass
class _Client:
    failures: deque[tuple[float, str]] = field(default_factory=deque)
    known: dict[str, float] = field(default_factory=dict)  # address → last success
    guarded_until: float = 0.0
    reported_until: float = 0.0


class AuthThrottle:
    """In-memory, bounded bookkeeping of failed and successful client authentication."""

    def __init__(
        self,
        *,
        anomaly_addresses: int = 20,
        anomaly_window_s: float = 600.0,
        guard_s: float = 900.0,
        known_for_s: float = 86_400.0,
        free_failures: int = 3,
        backoff: Backoff = FAILURE_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.anomaly_addresses = anomaly_addresses
        self.anomaly_window_s = anomaly_window_s
        self.guard_s = guard_s
        self.known_for_s = known_for_s
        self.free_failures = free_failures
        self.backoff = backoff
        self._clock = clock
        self._pairs: OrderedDict[tuple[str, str], _Pair] = OrderedDict()
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def refused(self, client_id: str, address: str) -> bool:
        """True when this attempt is not even checked: the pair is backing off, or the
        client is guarded and this address has not authenticated it recently."""
        now = self._clock()
        pair = self._pairs.get((client_id, address))
        if pair is not None and now < pair.blocked_until:
            return True
        client = self._clients.get(client_id)
        if client is None or now >= client.guarded_until:
            return False
        seen = client.known.get(address)
        return seen is None or now - seen > self.known_for_s

    def failure(self, client_id: str, address: str) -> Anomaly | None:
        """Count a failure; the anomaly it completes, reported once per window."""
        now = self._clock()
        pair = self._pairs.pop((client_id, address), None) or _Pair()
        pair.failures += 1
        beyond = pair.failures - self.free_failures
        if beyond > 0:
            pair.blocked_until = now + (self.backoff.delay(beyond) or self.backoff.cap)
        self._pairs[(client_id, address)] = pair
        _trim(self._pairs, _MAX_PAIRS)
        client = self._client(client_id)
        client.failures.append((now, address))
        while client.failures and (
            now - client.failures[0][0] > self.anomaly_window_s
            or len(client.failures) > _MAX_EVENTS_PER_CLIENT
        ):
            client.failures.popleft()
        addresses = {a for _, a in client.failures}
        if len(addresses) < self.anomaly_addresses or now < client.reported_until:
            return None
        client.guarded_until = now + self.guard_s
        client.reported_until = now + self.anomaly_window_s
        return Anomaly(
            client_id, len(addresses), len(client.failures), self.anomaly_window_s, self.guard_s
        )

    def success(self, client_id: str, address: str) -> None:
        """The pair authenticated: clear its backoff and remember the address."""
        self._pairs.pop((client_id, address), None)
        client = self._client(client_id)
        client.known[address] = self._clock()
        if len(client.known) > _MAX_EVENTS_PER_CLIENT:
            oldest = min(client.known, key=client.known.__getitem__)
            del client.known[oldest]

    def _client(self, client_id: str) -> _Client:
        client = self._clients.pop(client_id, None) or _Client()
        self._clients[client_id] = client  # most recently used last
        _trim(self._clients, _MAX_CLIENTS)
        return client


def _trim(entries: OrderedDict, limit: int) -> None:  # type: ignore[type-arg]
    while len(entries) > limit:
        entries.popitem(last=False)
