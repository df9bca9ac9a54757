"""One retry policy for every retry loop of the platform (docs/design.md §4, §6, §11).

:class:`Backoff` answers one question: after failed attempt ``n`` (1-based,
everywhere), how long to wait, or ``None`` when that was the last attempt. It is
either exponential (``base * factor**(n-1)`` capped at ``cap``) or an explicit
published schedule (the webhook retry schedule), with proportional jitter and a
server's ``Retry-After`` as a floor. :func:`retry` runs an operation under a
policy; exhaustion is logged at ERROR and raises, never ends silently.

``Retry-After`` (RFC 9110 §10.2.3) comes from other parties and is treated as
untrusted input: :func:`parse_retry_after` accepts only delta-seconds or an
HTTP-date, and :meth:`Backoff.honoured_retry_after` drops NaN and negative
values and clamps infinite or huge ones to ``retry_after_cap``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# RFC 9110 §10.2.3: delta-seconds = 1*DIGIT; a fraction is tolerated, nothing else.
_DELTA_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")
#: No server gets to park a retry for longer than this, whatever it says.
MAX_RETRY_AFTER_S = 7 * 24 * 3600.0


class RetriesExhausted(Exception):
    """The last attempt allowed by a :class:`Backoff` failed; ``__cause__`` is its error."""

    def __init__(self, what: str, attempts: int) -> None:
        super().__init__(f"{what}: gave up after {attempts} attempts")
        self.what = what
        self.attempts = attempts


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header value (RFC 9110 §10.2.3), or ``None``.

    Delta-seconds and HTTP-dates are read; anything else (``inf``, ``nan``, ``-1``,
    ``1e9``, text) is ignored. The result is finite, non-negative and at most
    :data:`MAX_RETRY_AFTER_S`.
    """
    if not value:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is not one
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


@dataclass(frozen=True)
class Backoff:
    """A retry policy: how long to wait after each failed attempt, and when to stop.

    - exponential: the step after attempt ``n`` is ``min(cap, base * factor**(n-1))``;
    - ``schedule``: the step after attempt ``n`` is ``schedule[n-1]`` (then ``cap`` is
      irrelevant and ``max_attempts`` defaults to ``len(schedule) + 1``);
    - ``jitter`` spreads each step uniformly over ``step * [1-jitter, 1+jitter]`` so
      that many clients retrying together do not hit a recovering server in step;
    - ``max_attempts``: ``None`` retries forever (infrastructure that must recover);
    - a ``Retry-After`` is a floor on the delay, capped at ``retry_after_cap``
      (default: the longest step).
    """

    base: float = 0.1
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    max_attempts: int | None = None
    schedule: tuple[float, ...] | None = None
    retry_after_cap: float | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter is a fraction between 0 and 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts is at least 1")
        if self.schedule is not None:
            object.__setattr__(self, "schedule", tuple(float(s) for s in self.schedule))
            if self.max_attempts is None:
                object.__setattr__(self, "max_attempts", len(self.schedule) + 1)
            if self.max_attempts is not None and self.max_attempts > len(self.schedule) + 1:
                raise ValueError("a schedule needs one step per retry")

    @classmethod
    def from_schedule(
        cls,
        steps: Sequence[float],
        *,
        jitter: float = 0.0,
        max_attempts: int | None = None,
        retry_after_cap: float | None = None,
    ) -> Backoff:
        """A policy from explicit steps: ``steps[n-1]`` follows failed attempt ``n``."""
        return cls(
            schedule=tuple(steps),
            jitter=jitter,
            max_attempts=max_attempts,
            retry_after_cap=retry_after_cap,
        )

    @property
    def longest_step(self) -> float:
        return max(self.schedule, default=0.0) if self.schedule is not None else self.cap

    def exhausted(self, attempt: int) -> bool:
        """Whether failed attempt ``attempt`` (1-based) was the last one allowed."""
        return self.max_attempts is not None and attempt >= self.max_attempts

    def step(self, attempt: int) -> float:
        """The nominal (unjittered) wait after failed attempt ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError("attempts are counted from 1")
        if self.schedule is not None:
            return self.schedule[min(attempt, len(self.schedule)) - 1]
        # the exponent is bounded so a loop that retried forever cannot overflow
        return min(self.cap, self.base * self.factor ** min(attempt - 1, 64))

    def honoured_retry_after(self, retry_after: float | None) -> float | None:
        """A server's ``Retry-After`` as this policy honours it: NaN and negative values
        are ignored, infinite and huge ones clamped to ``retry_after_cap``."""
        if retry_after is None or math.isnan(retry_after) or retry_after < 0:
            return None
        ceiling = self.retry_after_cap if self.retry_after_cap is not None else self.longest_step
        return min(retry_after, ceiling, MAX_RETRY_AFTER_S)

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (1-based); ``None`` when it
        was the last attempt allowed."""
        if self.exhausted(attempt):
            return None
        step = self.step(attempt)
        wait = step * self.rng.uniform(1 - self.jitter, 1 + self.jitter) if step else 0.0
        floor = self.honoured_retry_after(retry_after)
        return max(wait, floor) if floor is not None else wait


async def retry(
    op: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    what: str,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    logger: logging.Logger = log,
    on_retry: Callable[[BaseException, int], object] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    retry_level: int = logging.WARNING,
) -> T:
    """``await op()`` until it succeeds, waiting ``backoff.delay(n)`` after failure ``n``.

    Errors outside ``retry_on`` propagate at once. ``on_retry(error, n)`` is called
    before each wait (e.g. to report the caller unhealthy); each retry is logged at
    ``retry_level`` (DEBUG where waiting is the normal case). When the policy is
    exhausted the failure is logged at ERROR and :class:`RetriesExhausted` is
    raised from it.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await op()
        except retry_on as error:
            delay = backoff.delay(attempt)
            if delay is None:
                logger.error("%s failed %d times, giving up: %s", what, attempt, error)
                raise RetriesExhausted(what, attempt) from error
            logger.log(
                retry_level,
                "%s failed (attempt %d): %s; retrying in %.2fs",
                what,
                attempt,
                error,
                delay,
            )
            if on_retry is not None:
                on_retry(error, attempt)
            await sleep(delay)
