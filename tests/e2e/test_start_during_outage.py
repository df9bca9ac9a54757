"""A service started while Postgres or Kafka is down serves degraded and heals by itself
(docs/design.md §12, ADR 0053).

Each test starts its own Postgres or Kafka on free ports (the local stack's
functions), never the shared ones, and starts the transfer service *before* that
dependency: the process must serve at once (``/healthz`` 200, ``/readyz`` 503 naming
what is down), answer what it cannot do with a 503 problem and ``Retry-After``, and
work fully once the dependency is up, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from clearway.shared.auth import PLATFORM_TENANT
from clearway.shared.http import PROBLEM_MEDIA_TYPE
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.settings import PlatformSettings
from clearway.shared.testing.fixtures import _localstack, repo_root
from clearway.shared.testing.helpers import eventually, serve
from clearway.shared.testing.issuer import TestIssuer

pytestmark = pytest.mark.integration

BODY = {"amount": 100, "currency": "EUR", "source": "acct_payer", "destination": "acct_payee"}
TENANT = "ten_degraded"
DEAD_LETTERS = "/v1/platform/dead-letters"


def transfer_app(platform: PlatformSettings, issuer: TestIssuer) -> Any:
    from clearway.transfer.bootstrap import build_app
    from clearway.transfer.settings import TransferSettings

    return build_app(
        TransferSettings(
            platform=platform,
            jwks=issuer.jwks(),
            run_executor=False,
            revocation_feed=False,
            rail_url="http://127.0.0.1:9",
        )
    )


@contextlib.asynccontextmanager
async def client(app: Any, issuer: TestIssuer) -> AsyncIterator[httpx.AsyncClient]:
    token = issuer.token(
        sub="usr_degraded",
        client_id="cli_degraded",
        scopes=["payments:initiate", "payments:read"],
        audience="clearway-transfer",
        tenant=TENANT,
    )
    async with (
        serve(app) as url,
        httpx.AsyncClient(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as http,
    ):
        yield http


async def register_payer(app: Any) -> None:
    from clearway.transfer.domain import Account, Owner
    from clearway.transfer.handlers import register_accounts

    await register_accounts(app.state.core, [Account(TENANT, "acct_payer", Owner.TENANT)])


def webhooks_app(platform: PlatformSettings, issuer: TestIssuer) -> Any:
    from clearway.webhooks.bootstrap import build_app
    from clearway.webhooks.settings import WebhooksSettings

    return build_app(
        WebhooksSettings(platform=platform, jwks=issuer.jwks(), allow_networks=("127.0.0.0/8",))
    )


def operator_token(issuer: TestIssuer) -> str:
    return issuer.token(
        sub="usr_ops",
        client_id="cli_ops",
        scopes=["platform:dead-letters"],
        audience="clearway-webhooks",
        tenant=PLATFORM_TENANT,
    )


def private_base(kind: str) -> Path:
    # Not under pytest's tmp_path: parallel pytest runs prune each other's old ones.
    return repo_root() / ".local" / f"{kind}-{uuid.uuid4().hex[:8]}"


async def not_ready(http: httpx.AsyncClient, *checks: str) -> list[str]:
    r = await http.get("/readyz")
    assert r.status_code == 503, r.text
    failed: list[str] = r.json()["failed_checks"]
    for check in checks:
        assert check in failed, failed
    return failed


async def ready(http: httpx.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


def assert_unavailable(r: httpx.Response, *hidden: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert int(r.headers["retry-after"]) > 0
    assert r.json()["type"].endswith("/service-unavailable")
    for word in hidden:
        assert word not in r.text.lower()


async def test_services_started_before_postgres_serve_503s_then_heal(stack, topic_prefix):
    """Two replicas start before their database: both serve 503s, then both migrate
    (concurrently: the advisory lock of ``db.migrate`` serialises them) and heal."""
    ls = _localstack()
    base, port = private_base("start-pg"), ls.free_port()
    issuer = TestIssuer()
    platform = stack.platform(
        database_url=f"postgresql://postgres@127.0.0.1:{port}/clearway",
        topic_prefix=topic_prefix,
        oauth_issuer=issuer.issuer,
    )
    first, second = transfer_app(platform, issuer), transfer_app(platform, issuer)
    try:
        async with client(first, issuer) as http, client(second, issuer) as other:
            for h in (http, other):
                assert (await h.get("/healthz")).status_code == 200
                await not_ready(h, "startup:database")
                for r in (
                    await h.get("/v1/transfers"),
                    await h.post("/v1/transfers", json=BODY, headers={"Idempotency-Key": "k0"}),
                ):
                    assert_unavailable(r, "postgres", str(port), "traceback")

            await asyncio.to_thread(ls.start_postgres, base, port, True)
            # start attempts are at most START_BACKOFF's cap (5 s) apart
            await eventually(lambda: ready(http), timeout=60, interval=0.3)
            await eventually(lambda: ready(other), timeout=60, interval=0.3)
            await register_payer(first)
            r = await http.post("/v1/transfers", json=BODY, headers={"Idempotency-Key": "k1"})
            assert r.status_code == 201, r.text
            assert (await other.get(f"/v1/transfers/{r.json()['id']}")).status_code == 200
    finally:
        await asyncio.to_thread(ls.stop_postgres, base)
        shutil.rmtree(base, ignore_errors=True)


async def test_a_transfer_accepted_while_kafka_is_down_reaches_kafka_after_it_starts(
    stack, admin_dsn
):
    """Started before their broker: the transfer API accepts transfers (state + outbox)
    at once, readiness names the Kafka work that waits, a webhooks route that needs the
    broker answers 503, and the relay publishes the transfer once the broker is up."""
    ls = _localstack()
    base, port, controller = private_base("start-kafka"), ls.free_port(), ls.free_port()
    bootstrap = f"127.0.0.1:{port}"
    issuer = TestIssuer()
    prefix = f"t{uuid.uuid4().hex[:8]}."
    platform = PlatformSettings(  # the private broker is open (PLAINTEXT)
        database_url=admin_dsn,
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        oauth_issuer=issuer.issuer,
    )
    app = transfer_app(platform, issuer)
    webhooks = webhooks_app(platform, issuer)
    operator = {"Authorization": f"Bearer {operator_token(issuer)}"}
    try:
        async with (
            client(app, issuer) as http,
            serve(webhooks) as url,
            httpx.AsyncClient(base_url=url, timeout=30, headers=operator) as hooks,
        ):
            assert (await http.get("/healthz")).status_code == 200
            await not_ready(http, "task:kafka")  # the relay and consumers wait for it
            await register_payer(app)
            r = await http.post("/v1/transfers", json=BODY, headers={"Idempotency-Key": "k1"})
            assert r.status_code == 201, r.text
            transfer_id = r.json()["id"]
            assert (await http.get(f"/v1/transfers/{transfer_id}")).status_code == 200
            # a route that needs the broker itself: 503 with Retry-After, not a 500
            await not_ready(hooks, "task:kafka", "task:revocation-feed")
            assert_unavailable(await hooks.get(DEAD_LETTERS), str(port), "traceback")

            await asyncio.to_thread(ls.start_kafka, base, port, controller)
            # the supervisor restarts the Kafka start at most 10 s apart
            await eventually(lambda: ready(http), timeout=90, interval=0.5)
            assert transfer_id in await keys_on(bootstrap, f"{prefix}clearway.transfer.events.v1")
            await eventually(lambda: ready(hooks), timeout=60, interval=0.5)
            assert (await hooks.get(DEAD_LETTERS)).status_code == 200
    finally:
        await asyncio.to_thread(ls.stop_kafka, base)
        shutil.rmtree(base, ignore_errors=True)


async def keys_on(bootstrap: str, topic: str) -> set[str]:
    """The keys (aggregate ids) of the events on ``topic``, once there are any."""
    consumer = AIOKafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **KafkaLink(bootstrap).client_options(),
    )
    await consumer.start()
    keys: set[str] = set()
    try:

        async def some() -> set[str]:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    keys.add((record.key or b"").decode())
            return keys

        await eventually(some, timeout=60, interval=0)
    finally:
        await consumer.stop()
    return keys
