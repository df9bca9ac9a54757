"""Small helpers shared by the kit's integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from clearway.shared.db import Migration

SCHEMA = "kitdemo"
EFFECTS = Migration(
    "0001_effects",
    # No unique constraint on purpose: a double application would show as a
    # second row, so the tests count effects rather than trusting the inbox.
    "CREATE TABLE effects (id bigserial PRIMARY KEY, event_id text NOT NULL,"
    " correlation_id text, amount bigint NOT NULL)",
)


async def eventually(
    probe: Callable[[], Awaitable[bool]], timeout: float = 60.0, interval: float = 0.1
) -> None:
    """Wait until ``probe()`` is true; fail with the elapsed time otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await probe():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
