"""Fixtures for the transfer service's tests: real servers on 127.0.0.1, real stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from clearway.rail.bootstrap import AUDIENCE as RAIL_AUDIENCE
from clearway.rail.bootstrap import build_app as build_rail
from clearway.rail.settings import RailSettings
from clearway.shared.events import Event
from clearway.shared.kafka_start import KAFKA_TASK
from clearway.shared.testing.helpers import eventually as wait_until
from clearway.shared.testing.helpers import serve
from clearway.shared.testing.issuer import TestIssuer
from clearway.shared.testing.token_endpoint import TokenEndpoint
from clearway.transfer.bootstrap import build_app as build_transfer
from clearway.transfer.domain import Account, Owner
from clearway.transfer.handlers import register_accounts
from clearway.transfer.rail_client import RailClient
from clearway.transfer.settings import TransferSettings
from clearway.vault.bootstrap import AUDIENCE as VAULT_AUDIENCE
from clearway.vault.bootstrap import build_app as build_vault
from clearway.vault.settings import VaultSettings

SCOPES = ("payments:initiate", "payments:read", "payments:cancel")
#: The accounts the tests debit with client credentials: their tenants' own.
TENANT_ACCOUNTS = [
    "acct_payer1",
    "acct_nsf1",
    "acct_x",
    *(f"acct_src{i}" for i in range(17)),
]
TEST_TENANTS = ("ten_a", "ten_b")


@pytest.fixture(scope="session")
def issuer() -> TestIssuer:
    return TestIssuer()


@dataclass
class Clearway:
    """The running services of one test and a way to call them."""

    url: str
    rail_url: str
    app: Any
    db: asyncpg.Pool
    issuer: TestIssuer
    settings: TransferSettings
    """The transfer service's settings (its client for the rail's service tokens included)."""
    tokens: TokenEndpoint
    """Where the transfer service gets its rail and vault tokens."""
    vault_urls: dict[str, str] | None = None
    """The vault of each region (``ten_b`` lives in ``us`` when a test runs two regions)."""

    def token(
        self,
        tenant: str = "ten_a",
        client_id: str = "cli_mobile",
        scopes: tuple[str, ...] = SCOPES,
        sub: str = "usr_1",
    ) -> str:
        return self.issuer.token(
            sub=sub, client_id=client_id, scopes=scopes, audience="clearway-transfer", tenant=tenant
        )

    def client(self, **token: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            timeout=60,
            headers={"Authorization": f"Bearer {self.token(**token)}"},
        )

    async def post(self, key: str | None, body: Any, **token: Any) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key is not None else {}
        async with self.client(**token) as c:
            if isinstance(body, str | bytes):
                headers["Content-Type"] = "application/json"
                return await c.post("/v1/transfers", content=body, headers=headers)
            return await c.post("/v1/transfers", json=body, headers=headers)

    async def rail(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Call the rail as a sandbox operator (every rail scope)."""
        token = self.issuer.token(
            sub="clearway-sandbox",
            client_id="clearway-sandbox",
            scopes=["rail:charges", "rail:settlements", "rail:sandbox"],
            audience=RAIL_AUDIENCE,
        )
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=self.rail_url, timeout=30, headers=headers) as c:
            return await c.request(method, path, **kw)

    def rail_client(self, scope: str = "rail:charges") -> RailClient:
        """A rail client as the transfer service builds one (tokens from the test issuer)."""
        return RailClient(self.rail_url, auth=self.settings.service_tokens(scope))

    async def tokenize(self, number: str, tenant: str = "ten_a") -> httpx.Response:
        """Tokenize a card at the vault as a partner of ``tenant``."""
        token = self.issuer.token(
            sub="cli_shop",
            client_id="cli_shop",
            scopes=["cards:tokenize"],
            audience=VAULT_AUDIENCE,
            tenant=tenant,
        )
        region = self.settings.platform.residency().region_of(tenant)
        async with httpx.AsyncClient(
            base_url=(self.vault_urls or {})[region],
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        ) as c:
            return await c.post(
                "/v1/cards", json={"number": number, "exp_month": 12, "exp_year": 2099}
            )

    async def count(self, sql: str, *args: Any) -> int:
        return await self.db.fetchval(sql, *args)

    async def statuses(self) -> dict[str, str]:
        rows = await self.db.fetch("SELECT id, status FROM transfer.transfers")
        return {r["id"]: r["status"] for r in rows}

    async def unbalanced(self) -> int:
        return await self.db.fetchval(
            "SELECT count(*) FROM (SELECT transfer_id FROM transfer.ledger_postings"
            " GROUP BY transfer_id HAVING sum(amount) <> 0 OR count(*) <> 2) x"
        )


@asynccontextmanager
async def running(
    platform,
    issuer: TestIssuer,
    token_ttl_s: float = 300,
    us_database: str | None = None,
    **overrides: Any,
) -> AsyncIterator[Clearway]:
    """The rail, the vault and the transfer service, in-process behind real HTTP servers;
    the transfer service gets its rail and vault tokens from a token endpoint of the
    test issuer. With ``us_database``, tenant ``ten_b`` lives in region ``us``, whose
    vault runs on that database (docs/design.md §9)."""
    # intents tests backdate records (a backlog sent an hour ago): a CreateTime topic,
    # not the broker's append time of production (ADR 0054)
    platform = platform.replace(oauth_issuer=issuer.issuer, intents_broker_time=False)
    if us_database is not None:
        platform = platform.replace(tenant_regions={"ten_b": "us"})
    endpoint = TokenEndpoint(issuer, ttl_s=token_ttl_s)
    scopes = {
        "rail:charges": RAIL_AUDIENCE,
        "rail:settlements": RAIL_AUDIENCE,
        "cards:verify": VAULT_AUDIENCE,
        "cards:detokenize": VAULT_AUDIENCE,
    }
    secret = endpoint.register("clearway-transfer", list(scopes), audience=scopes)
    rail_app = build_rail(RailSettings(platform=platform, jwks=issuer.jwks(), fault_seed=7))
    regions = {"eu": platform}
    if us_database is not None:
        regions["us"] = platform.replace(region="us", database_url=us_database)
    async with AsyncExitStack() as stack:
        token_url = await stack.enter_async_context(serve(endpoint.app()))
        rail_url = await stack.enter_async_context(serve(rail_app))
        vault_urls = {
            region: await stack.enter_async_context(
                serve(build_vault(VaultSettings(platform=p, jwks=issuer.jwks())))
            )
            for region, p in regions.items()
        }
        settings = TransferSettings(
            platform=platform,
            jwks=issuer.jwks(),
            rail_url=rail_url,
            vault_urls=vault_urls,
            token_url=f"{token_url}/oauth/token",
            client_secret=secret,
            maintenance_interval_s=1.0,
            sweep_grace_s=5.0,
            revocation_feed=False,
        ).replace(**overrides)
        app = build_transfer(settings)
        async with serve(app) as url:
            # The service makes its topics in a one-off background task (ADR 0053),
            # forgotten once done; the tests publish intents as an initiator, who may
            # not create topics: wait for it.
            async def topics_made() -> bool:
                return KAFKA_TASK not in app.state.supervisor.status()

            await wait_until(topics_made)
            await register_accounts(
                app.state.core,
                [Account(t, a, Owner.TENANT) for t in TEST_TENANTS for a in TENANT_ACCOUNTS],
            )
            db = await asyncpg.create_pool(platform.database_url, min_size=1, max_size=4)
            try:
                yield Clearway(url, rail_url, app, db, issuer, settings, endpoint, vault_urls)
            finally:
                await db.close()


@pytest_asyncio.fixture
async def clearway(platform, issuer) -> AsyncIterator[Clearway]:
    async with running(platform, issuer) as cw:
        yield cw


@pytest.fixture
def body() -> dict[str, Any]:
    return {
        "amount": 12500,
        "currency": "EUR",
        "source": "acct_payer1",
        "destination": "acct_payee1",
        "description": "Invoice 1142",
        "metadata": {"order": "ord_1"},
    }


@pytest.fixture
def eventually():
    return wait_until


@pytest.fixture
def start_services(platform, issuer):
    """``async with start_services(**settings_overrides) as cw`` for tests needing
    their own configuration (e.g. the executor switched off); ``local_dir`` gives the
    services another local directory (and so another development keyring)."""

    def start(local_dir: Path | None = None, **overrides: Any) -> Any:
        own = platform if local_dir is None else platform.replace(local_dir=local_dir)
        return running(own, issuer, **overrides)

    return start


@pytest.fixture
def published(platform):
    """``await published()``: every event on the transfer events topic so far, in order."""

    async def read(topic: str = "clearway.transfer.events.v1") -> list[Event]:
        consumer = AIOKafkaConsumer(
            platform.topic(topic),
            **platform.kafka.client_options(),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        out: list[Event] = []
        try:
            for _ in range(100):  # bounded: until a poll finds nothing new
                batch = await consumer.getmany(timeout_ms=1500, max_records=10_000)
                if not batch:
                    break
                for records in batch.values():
                    out += [Event.from_kafka(r.headers, r.value) for r in records]
        finally:
            await consumer.stop()
        return out

    return read
