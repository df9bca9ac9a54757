"""Partners' webhook receivers that fail (503) for a while, then recover.

Each keeps the ``webhook-id`` of every delivery it answered 2xx, so the check can
hold the webhook service's ``delivered`` against what a partner really got.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from clearway.shared.testing.helpers import free_port


class FlakyReceiver:
    """204 to everything, but 503 for ``fail_s`` after :meth:`arm`."""

    def __init__(self, name: str, fail_s: float) -> None:
        self.name = name
        self.fail_s = fail_s
        self.port = free_port()
        self.received: set[str] = set()
        self.refused = 0
        self._healthy_at = 0.0

    def arm(self) -> None:
        """Start the failing period now."""
        self._healthy_at = time.monotonic() + self.fail_s

    @property
    def failing(self) -> bool:
        return time.monotonic() < self._healthy_at

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if self.failing:
            self.refused += 1
            status = 503
        else:
            status = 204
            headers = dict(scope["headers"])
            self.received.add(headers.get(b"webhook-id", b"").decode())
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = uvicorn.Server(
            uvicorn.Config(
                self, host="127.0.0.1", port=self.port, log_config=None, access_log=False
            )
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{self.port}/hooks/{self.name}"
        finally:
            server.should_exit = True
            await task
