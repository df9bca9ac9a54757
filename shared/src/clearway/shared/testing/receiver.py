"""A partner's webhook endpoint for tests and benchmarks: a real HTTP server that verifies
every delivery the way a partner does (docs/design.md §6).

The verifier is anything with ``verify(body, headers) -> event`` — the partner package's
``Verifier`` in practice; the kit does not depend on the partner package. It is set once
the endpoint is registered and its secret known; until then every delivery is refused.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from clearway.shared.testing.helpers import serve


class WebhookVerifier(Protocol):
    def verify(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]: ...


class VerifyingReceiver:
    """Answers 204 to a delivery whose signature verifies and keeps its event, as
    ``{"headers": …, "arrived_at": <epoch s>, **event}``, in :attr:`events`; answers 400
    to any other delivery and counts it in :attr:`rejected` (a test asserts it is 0)."""

    def __init__(self) -> None:
        self.verifier: WebhookVerifier | None = None
        self.events: list[dict[str, Any]] = []
        self.rejected = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        arrived_at = time.time()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            if self.verifier is None:
                raise ValueError("no secret yet")
            event = self.verifier.verify(body, headers)
        except Exception:  # any verification failure is the sender's fault: 400, counted
            self.rejected += 1
            status = 400
        else:
            self.events.append({"headers": headers, "arrived_at": arrived_at, **event})
            status = 204
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        """The verified events of ``event_type``, in arrival order."""
        return [e for e in self.events if e["type"] == event_type]

    @asynccontextmanager
    async def serving(
        self, host: str = "127.0.0.1", port: int | None = None, path: str = "/hooks"
    ) -> AsyncIterator[str]:
        """Serve on ``host`` (a free port unless given) and yield the endpoint's URL."""
        async with serve(self, port, host=host, lifespan="off") as base:
            yield base + path
