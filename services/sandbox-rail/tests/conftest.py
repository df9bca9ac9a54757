"""Fixtures for the sandbox rail's tests: the rail behind a real uvicorn server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
import uvicorn

from clearway.rail.bootstrap import build_app
from clearway.rail.settings import RailSettings
from clearway.shared.testing.helpers import free_port


@pytest_asyncio.fixture
async def rail(platform) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    app = build_app(RailSettings(platform=platform, fault_seed=1))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 60
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "rail did not start"
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    server.should_exit = True
    await asyncio.wait_for(task, 30)
