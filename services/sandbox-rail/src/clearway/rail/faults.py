"""Fault injection for the rail's charge endpoint (latency, 5xx, lost response, crash).

Pure ASGI so that a "lost response" really is lost: the charge is committed,
the response headers go out promising a body, and the connection is closed
before the body is sent. The caller cannot tell whether the charge happened,
which is exactly the ambiguity the transfer executor must resolve.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clearway.rail.domain import FaultAction, FaultPlan

log = logging.getLogger(__name__)
CHARGE_PATH = "/v1/charges"


class ResponseLost(Exception):
    """Raised after the headers went out so that the server drops the connection."""


class FaultState:
    """The current plan, switched at run time over HTTP."""

    def __init__(self, seed: int | None = None) -> None:
        self.plan = FaultPlan()
        self.rng = random.Random(seed)
        self.injected: dict[str, int] = {a.value: 0 for a in FaultAction}


class FaultInjector:
    def __init__(self, app: ASGIApp, state: FaultState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == CHARGE_PATH
        ):
            await self.app(scope, receive, send)
            return
        plan = self.state.plan
        if plan.latency_ms:
            await asyncio.sleep(plan.latency_ms / 1000)
        action = plan.draw(self.state.rng)
        self.state.injected[action.value] += 1
        if action is FaultAction.ERROR:
            await _send_503(send)
            return
        if action is FaultAction.NONE:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)  # the charge is committed here
        if action is FaultAction.CRASH:
            log.warning("fault injection: crashing after the charge was committed")
            os._exit(17)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"charge', "more_body": True})
        raise ResponseLost("fault injection: response dropped after the charge was committed")


async def _send_503(send: Send) -> None:
    body = json.dumps(
        {
            "type": "https://docs.clearway.dev/problems/rail-unavailable",
            "title": "Rail unavailable",
            "status": 503,
            "detail": "Injected fault: the rail is temporarily unavailable.",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
