"""Fixtures for the vault's tests: the vault behind a real HTTP server, tokens from a
test issuer, and a reader of the vault's events topic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from clearway.shared.events import Event
from clearway.shared.testing.helpers import serve
from clearway.shared.testing.issuer import TestIssuer
from clearway.vault.bootstrap import AUDIENCE, build_app
from clearway.vault.settings import EVENTS_TOPIC, VaultSettings

VISA = "4111 1111 1111 1111"
VISA_DIGITS = VISA.replace(" ", "")


@pytest.fixture(scope="session")
def issuer() -> TestIssuer:
    return TestIssuer()


@dataclass
class VaultUnderTest:
    url: str
    issuer: TestIssuer
    app: Any

    def token(
        self, tenant: str | None = "ten_a", scopes: tuple[str, ...] = ("cards:tokenize",), **kw: Any
    ) -> str:
        client = kw.pop("client_id", "cli_shop")
        return self.issuer.token(
            sub=kw.pop("sub", client),
            client_id=client,
            scopes=scopes,
            audience=AUDIENCE,
            tenant=tenant,
            **kw,
        )

    def client(self, **token: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            timeout=30,
            headers={"Authorization": f"Bearer {self.token(**token)}"},
        )

    def executor(self, scopes: tuple[str, ...] = ("cards:detokenize",)) -> httpx.AsyncClient:
        """A client as the transfer executor's service client (platform tenant)."""
        return self.client(tenant="tnt_platform", scopes=scopes, client_id="clearway-transfer")

    async def tokenize(self, tenant: str = "ten_a", **card: Any) -> httpx.Response:
        body = {"number": VISA, "exp_month": 12, "exp_year": 2099, **card}
        async with self.client(tenant=tenant) as c:
            return await c.post("/v1/cards", json=body)


@pytest_asyncio.fixture
async def vault(platform, issuer) -> AsyncIterator[VaultUnderTest]:
    settings = VaultSettings(
        platform=platform.replace(oauth_issuer=issuer.issuer), jwks=issuer.jwks()
    )
    app = build_app(settings)
    async with serve(app) as url:
        yield VaultUnderTest(url, issuer, app)


@pytest.fixture
def vault_events(platform):
    """``await vault_events()``: every event on the vault's topic so far."""

    async def read() -> list[Event]:
        consumer = AIOKafkaConsumer(
            platform.topic(EVENTS_TOPIC),
            **platform.kafka.client_options(),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        out: list[Event] = []
        try:
            for _ in range(50):  # bounded: until a poll finds nothing new
                batch = await consumer.getmany(timeout_ms=1000, max_records=1000)
                if not batch:
                    break
                for records in batch.values():
                    out += [Event.from_kafka(r.headers, r.value) for r in records]
        finally:
            await consumer.stop()
        return out

    return read
