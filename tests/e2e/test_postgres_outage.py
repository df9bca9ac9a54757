"""Postgres stops under a running service: 503 with Retry-After, then recovery.

The test starts its own Postgres on a free port (the local stack's functions),
never the shared one, serves the transfer service on a real HTTP server against
it, stops that Postgres, and expects every request that needs the database to be
a 503 problem with ``Retry-After`` (never a 500). After Postgres is back, the same
process answers 2xx again without a restart.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid

import httpx
import pytest

from clearway.shared.http import PROBLEM_MEDIA_TYPE
from clearway.shared.testing.fixtures import _localstack, repo_root
from clearway.shared.testing.helpers import serve
from clearway.shared.testing.issuer import TestIssuer

pytestmark = pytest.mark.integration

BODY = {"amount": 100, "currency": "EUR", "source": "acct_payer", "destination": "acct_payee"}


async def test_a_stopped_postgres_is_a_503_with_retry_after_and_the_service_recovers(
    stack, topic_prefix
):
    from clearway.transfer.bootstrap import build_app
    from clearway.transfer.domain import Account, Owner
    from clearway.transfer.handlers import register_accounts
    from clearway.transfer.settings import TransferSettings

    ls = _localstack()
    # Not under pytest's tmp_path: pytest runs in parallel (other checkouts, CI
    # shards) prune each other's old temporary directories.
    base, port = repo_root() / ".local" / f"outage-pg-{uuid.uuid4().hex[:8]}", ls.free_port()
    await asyncio.to_thread(ls.start_postgres, base, port, True)
    try:
        issuer = TestIssuer()
        platform = stack.platform(
            database_url=f"postgresql://postgres@127.0.0.1:{port}/clearway",
            topic_prefix=topic_prefix,
            oauth_issuer=issuer.issuer,
        )
        app = build_app(
            TransferSettings(
                platform=platform,
                jwks=issuer.jwks(),
                run_executor=False,
                revocation_feed=False,
                rail_url="http://127.0.0.1:9",
                maintenance_interval_s=0.5,
            )
        )
        token = issuer.token(
            sub="usr_outage",
            client_id="cli_outage",
            scopes=["payments:initiate", "payments:read"],
            audience="clearway-transfer",
            tenant="ten_outage",
        )
        async with (
            serve(app) as url,
            httpx.AsyncClient(
                base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}
            ) as http,
        ):
            # the tenant's own account, which its client credentials may debit
            await register_accounts(
                app.state.core, [Account("ten_outage", "acct_payer", Owner.TENANT)]
            )

            async def create(key: str) -> httpx.Response:
                return await http.post("/v1/transfers", json=BODY, headers={"Idempotency-Key": key})

            assert (await create("before")).status_code == 201
            assert (await http.get("/v1/transfers")).status_code == 200

            await asyncio.to_thread(ls.stop_postgres, base)
            for request in (
                lambda: http.get("/v1/transfers"),
                lambda: http.get("/v1/transfers/tr_unknown"),
                lambda: create("during"),
                lambda: http.get("/v1/transfers"),  # again: pooled connections were dropped
            ):
                r = await request()
                assert r.status_code == 503, r.text
                assert r.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
                assert int(r.headers["retry-after"]) > 0
                assert r.json()["type"].endswith("/service-unavailable")
                assert str(port) not in r.text and "postgres" not in r.text.lower()
            assert (await http.get("/readyz")).status_code == 503

            await asyncio.to_thread(ls.start_postgres, base, port, True)
            deadline = asyncio.get_running_loop().time() + 30
            while (r := await http.get("/v1/transfers")).status_code != 200:
                assert r.status_code == 503, r.text
                assert asyncio.get_running_loop().time() < deadline, "no recovery in 30 s"
                await asyncio.sleep(0.2)
            assert (await create("after")).status_code == 201
            assert len((await http.get("/v1/transfers")).json()["data"]) == 2
            # Background work reconnects on its own backoff (relay and consumers retry
            # at most ~12 s apart), so readiness follows within seconds, not at once.
            deadline = asyncio.get_running_loop().time() + 60
            while (r := await http.get("/readyz")).status_code != 200:
                assert r.status_code == 503, r.text
                assert asyncio.get_running_loop().time() < deadline, r.text
                await asyncio.sleep(0.5)
    finally:
        await asyncio.to_thread(ls.stop_postgres, base)
        shutil.rmtree(base, ignore_errors=True)
