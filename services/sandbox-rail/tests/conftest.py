"""Fixtures for the sandbox rail's tests: the rail behind a real uvicorn server,
called with service tokens from a test issuer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
import uvicorn

from clearway.rail.bootstrap import AUDIENCE, build_app
from clearway.rail.settings import RailSettings
from clearway.shared.testing.helpers import free_port
from clearway.shared.testing.issuer import TestIssuer

#: Every scope of the rail: charging, the settlement report and the sandbox tools.
RAIL_SCOPES = ("rail:charges", "rail:settlements", "rail:sandbox")


@pytest.fixture(scope="session")
def issuer() -> TestIssuer:
    return TestIssuer()


def service_token(issuer: TestIssuer, scopes=RAIL_SCOPES, **kw) -> str:
    """A service token as the consent service issues one to the transfer service."""
    return issuer.token(
        sub="clearway-transfer",
        client_id="clearway-transfer",
        scopes=scopes,
        audience=kw.pop("audience", AUDIENCE),
        **kw,
    )


@pytest_asyncio.fixture
async def rail(platform, issuer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a running rail holding a token with every rail scope."""
    port = free_port()
    settings = RailSettings(
        platform=platform.replace(oauth_issuer=issuer.issuer), jwks=issuer.jwks(), fault_seed=1
    )
    server = uvicorn.Server(
        uvicorn.Config(build_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 60
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "rail did not start"
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        timeout=30,
        headers={"Authorization": f"Bearer {service_token(issuer)}"},
    ) as client:
        yield client
    server.should_exit = True
    await asyncio.wait_for(task, 30)
