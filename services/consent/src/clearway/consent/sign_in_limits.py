"""Rate limits of the first-party sign-in form (docs/design.md §7): every attempt costs an
argon2 verification, so attempts are counted per username and per client address in a
fixed window, in Postgres so that every process of the deployment counts together.
Over either limit the form answers 429 with ``Retry-After`` (RFC 6585 §4) without
looking at the password. A successful sign-in clears its username's counter (not the
address's: one known account must not reopen the door for guessing others)."""

from __future__ import annotations

import math

from clearway.consent import store_limits
from clearway.consent.service import Service


class TooManySignIns(Exception):
    """Over a sign-in limit; ``retry_after`` whole seconds until the window ends."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many sign-in attempts; retry after {retry_after} s")
        self.retry_after = retry_after


def _keys(svc: Service, username: str, address: str) -> list[tuple[bytes, int]]:
    # blind indexes: the table holds neither the username nor the address (personal data)
    settings = svc.settings
    return [
        (_username_key(svc, username), settings.sign_in_max_per_username),
        (svc.pii.index("sign_in_limits", "address", "", address), settings.sign_in_max_per_address),
    ]


def _username_key(svc: Service, username: str) -> bytes:
    return svc.pii.index("sign_in_limits", "username", "", username.strip().casefold())


async def admit_sign_in(svc: Service, username: str, address: str) -> None:
    """Count this attempt against ``username`` and ``address``; ``TooManySignIns`` when
    either is over its limit in the current window."""
    window = svc.settings.sign_in_window_s
    waits: list[float] = []
    async with svc.pool.acquire() as conn:
        for key, limit in _keys(svc, username, address):
            attempts, left_s = await store_limits.count_attempt(conn, key, window)
            if attempts > limit:
                waits.append(left_s)
    if waits:
        raise TooManySignIns(max(1, math.ceil(max(waits))))


async def signed_in(svc: Service, username: str) -> None:
    """The user proved their password: their username's counter starts again."""
    async with svc.pool.acquire() as conn:
        await store_limits.clear(conn, _username_key(svc, username))


async def purge_sign_in_limits(svc: Service) -> None:
    """Delete the counters of windows that are over (a Supervisor job)."""
    async with svc.pool.acquire() as conn:
        await store_limits.purge(conn, svc.settings.sign_in_window_s)
