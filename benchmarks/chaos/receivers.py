"""Partners' webhook receivers that fail (503) for a while, then recover.

Each keeps the ``webhook-id`` of every delivery it answered 2xx, so the check can
hold the webhook service's ``delivered`` against what a partner really got.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from clearway.shared.testing.helpers import free_port, serve


class FlakyReceiver:
    """204 to everything, but ``status`` for ``fail_s`` from :meth:`arm` on to a
    ``share`` of the messages (always the same ones, by ``webhook-id``). A 503 says
    the endpoint is down: the circuit breaker pauses it and its messages wait for the
    recovery. A 500 is about the message (docs/design.md §6): the breaker stays
    closed, and a message refused for longer than the retry schedule is dead-lettered.
    """

    def __init__(self, name: str, fail_s: float, share: float = 1.0, status: int = 503) -> None:
        self.name = name
        self.fail_s = fail_s
        self.share = share
        self.status = status
        self.port = free_port()
        self.received: set[str] = set()
        self.refused = 0
        self._healthy_at = 0.0
        self._armed = False

    def arm(self) -> None:
        """Start the failing period at the next delivery (so that it meets traffic)."""
        self._armed = True

    @property
    def failing(self) -> bool:
        return time.monotonic() < self._healthy_at

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if self._armed:
            self._armed, self._healthy_at = False, time.monotonic() + self.fail_s
        webhook_id = dict(scope["headers"]).get(b"webhook-id", b"")
        if self.failing and zlib.crc32(webhook_id) % 1000 < self.share * 1000:
            self.refused += 1
            status = self.status
        else:
            status = 204
            self.received.add(webhook_id.decode())
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        async with serve(self, self.port, lifespan="off") as base:
            yield f"{base}/hooks/{self.name}"
