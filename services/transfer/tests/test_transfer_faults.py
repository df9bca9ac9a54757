"""The fault run: services as real processes, a lossy network, a rail that loses
responses after charging, and the transfer service SIGKILLed at random moments."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn

from clearway.shared.testing.helpers import kafka_env
from clearway.shared.testing.token_endpoint import TokenEndpoint
from clearway.transfer import store_accounts
from clearway.transfer.domain import Account, Owner

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

INTENTS = int(os.environ.get("CLEARWAY_FAULT_RUN_INTENTS", "1000"))


class LossyProxy:
    """A TCP proxy that forwards requests and sometimes drops the response instead."""

    def __init__(self, target_port: int, drop_rate: float, seed: int = 3) -> None:
        self.target_port = target_port
        self.drop_rate = drop_rate
        self.rng = random.Random(seed)
        self.dropped = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()

    async def _handle(self, creader, cwriter) -> None:
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cwriter.close()
            return

        async def upstream() -> None:
            while data := await creader.read(65536):
                swriter.write(data)
                await swriter.drain()

        async def downstream() -> None:
            while data := await sreader.read(65536):
                if self.rng.random() < self.drop_rate:
                    self.dropped += 1  # the server answered; the client never hears it
                    return
                cwriter.write(data)
                await cwriter.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except Exception:
            pass
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (cwriter, swriter):
                w.close()


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    def __init__(self, module: str, env: dict[str, str], log: Path) -> None:
        self.module, self.env, self.log = module, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module], env=self.env, stdout=out, stderr=out
        )

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def healthy(self, port: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as c:
            while time.monotonic() < deadline:
                assert self.proc and self.proc.poll() is None, self.log.read_text()[-3000:]
                try:
                    if (await c.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.module} not healthy")


async def test_intents_through_a_lossy_network_with_kills_are_charged_exactly_once(
    platform, issuer, tmp_path
):
    jwks_port, rail_port, transfer_port = _port(), _port(), _port()
    # the consent service's part: JWKS for both services, rail tokens for transfer
    tokens = TokenEndpoint(issuer)
    secret = tokens.register(
        "clearway-transfer", ["rail:charges", "rail:settlements"], audience="clearway-rail"
    )
    jwks_server = uvicorn.Server(
        uvicorn.Config(tokens.app(), host="127.0.0.1", port=jwks_port, log_config=None)
    )
    jwks_task = asyncio.create_task(jwks_server.serve())
    sandbox = {
        "Authorization": "Bearer "
        + issuer.token(
            sub="clearway-sandbox",
            client_id="clearway-sandbox",
            scopes=["rail:sandbox"],
            audience="clearway-rail",
            ttl_s=3600,
        )
    }
    base_env = {
        **os.environ,
        "CLEARWAY_DATABASE_URL": platform.database_url,
        **kafka_env(platform),
        "CLEARWAY_TOPIC_PREFIX": platform.topic_prefix,
    }
    rail = Process(
        "clearway.rail",
        {
            **base_env,
            "CLEARWAY_RAIL_PORT": str(rail_port),
            "CLEARWAY_OAUTH_ISSUER": issuer.issuer,
            "CLEARWAY_OAUTH_JWKS_URL": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
        },
        tmp_path / "rail.log",
    )
    transfer = Process(
        "clearway.transfer",
        {
            **base_env,
            "CLEARWAY_TRANSFER_PORT": str(transfer_port),
            "CLEARWAY_OAUTH_ISSUER": issuer.issuer,
            "CLEARWAY_OAUTH_JWKS_URL": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
            "CLEARWAY_TRANSFER_TOKEN_URL": f"http://127.0.0.1:{jwks_port}/oauth/token",
            "CLEARWAY_TRANSFER_CLIENT_SECRET": secret,
            "CLEARWAY_TRANSFER_RAIL_URL": f"http://127.0.0.1:{rail_port}",
            "CLEARWAY_TRANSFER_LOCK_TIMEOUT_S": "3",
            "CLEARWAY_TRANSFER_MAINTENANCE_INTERVAL_S": "2",
            "CLEARWAY_TRANSFER_SWEEP_GRACE_S": "5",
            "CLEARWAY_TRANSFER_REVOCATION_FEED": "0",
        },
        tmp_path / "transfer.log",
    )
    proxy = LossyProxy(transfer_port, drop_rate=0.15)
    proxy_port = await proxy.start()
    token = issuer.token(
        sub="usr_1",
        client_id="cli_mobile",
        scopes=["payments:initiate", "payments:read"],
        audience="clearway-transfer",
        tenant="ten_a",
        ttl_s=3600,
    )
    answers: dict[str, set[str]] = {}
    attempts = 0
    kills = 0
    try:
        rail.start()
        await rail.healthy(rail_port)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{rail_port}", headers=sandbox
        ) as c:
            await c.put("/v1/faults", json={"lose_response_rate": 0.25})
        transfer.start()
        await transfer.healthy(transfer_port)
        # the sources are the tenant's own accounts, which client credentials may debit
        await own_accounts(platform, "ten_a", [f"acct_src{i}" for i in range(17)])

        keys = [f"fault-{i}" for i in range(INTENTS)]
        queue: asyncio.Queue[str] = asyncio.Queue()
        for k in keys:
            queue.put_nowait(k)
        deadline = time.monotonic() + 240

        async def client_worker() -> None:
            nonlocal attempts
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{proxy_port}",
                timeout=10,
                headers={"Authorization": f"Bearer {token}"},
            ) as c:
                while not queue.empty():
                    key = queue.get_nowait()
                    i = int(key.split("-")[1])
                    body = {
                        "amount": 1000 + i,
                        "currency": "EUR",
                        "source": f"acct_src{i % 17}",
                        "destination": f"acct_dst{i % 13}",
                    }
                    while time.monotonic() < deadline:  # retry on every error
                        attempts += 1
                        try:
                            r = await c.post(
                                "/v1/transfers", json=body, headers={"Idempotency-Key": key}
                            )
                        except httpx.TransportError:
                            await asyncio.sleep(0.05)
                            continue
                        if r.status_code in (200, 201):
                            answers.setdefault(key, set()).add(r.json()["id"])
                            break
                        assert r.status_code in (409, 500, 502, 503), r.text
                        await asyncio.sleep(0.1)

        async def killer() -> None:
            nonlocal kills
            rng = random.Random(11)
            while kills < 4 and not queue.empty():
                await asyncio.sleep(rng.uniform(2.0, 5.0))
                transfer.kill()
                kills += 1
                transfer.start()
                await transfer.healthy(transfer_port)

        workers = [asyncio.create_task(client_worker()) for _ in range(24)]
        kill_task = asyncio.create_task(killer())
        await asyncio.gather(*workers)
        await kill_task
        assert len(answers) == INTENTS, "every intent was eventually answered"
        assert all(len(ids) == 1 for ids in answers.values()), "one transfer per key"

        db = await asyncpg.connect(platform.database_url)
        try:

            async def all_final() -> bool:
                n = await db.fetchval(
                    "SELECT count(*) FROM transfer.transfers WHERE status IN ('settled','failed')"
                )
                return n == INTENTS

            end = time.monotonic() + 180
            while not await all_final():
                assert time.monotonic() < end, "transfers still open"
                await asyncio.sleep(0.5)
            assert await db.fetchval("SELECT count(*) FROM transfer.transfers") == INTENTS
            unsettled = await db.fetch(
                "SELECT id, status, failure_reason FROM transfer.transfers"
                " WHERE status <> 'settled' LIMIT 5"
            )
            assert not unsettled, [dict(r) for r in unsettled]
            # exactly one rail charge per distinct key, and only one charging request each
            assert await db.fetchval("SELECT count(*) FROM rail.charges") == INTENTS
            assert (
                await db.fetchval("SELECT count(*) FROM rail.charge_requests WHERE created")
                == INTENTS
            )
            assert (
                await db.fetchval(
                    "SELECT count(*) FROM transfer.transfers t JOIN rail.charges c"
                    " ON c.reference = t.reference AND c.amount = t.amount"
                )
                == INTENTS
            )
            # the ledger balances: one debit and one credit per settled transfer
            assert (
                await db.fetchval(
                    "SELECT count(*) FROM (SELECT transfer_id FROM transfer.ledger_postings"
                    " GROUP BY transfer_id HAVING sum(amount) <> 0 OR count(*) <> 2) x"
                )
                == 0
            )
            assert await db.fetchval("SELECT count(*) FROM transfer.ledger_postings") == 2 * INTENTS
            assert (
                await db.fetchval("SELECT coalesce(sum(amount), 0) FROM transfer.ledger_postings")
                == 0
            )
        finally:
            await db.close()
        faults = httpx.get(f"http://127.0.0.1:{rail_port}/v1/faults", headers=sandbox).json()[
            "injected"
        ]
        print(
            f"fault run: intents={INTENTS} attempts={attempts} kills={kills} "
            f"responses dropped by proxy={proxy.dropped} "
            f"rail responses lost={faults['lose_response']}"
        )
        assert kills >= 2 and proxy.dropped > 0 and faults["lose_response"] > 0
    finally:
        transfer.stop()
        rail.stop()
        await proxy.stop()
        jwks_server.should_exit = True
        await asyncio.wait_for(jwks_task, 10)


async def own_accounts(platform, tenant: str, ids: list[str]) -> None:
    """Register ``ids`` as ``tenant``'s own accounts in a transfer service's schema."""
    conn = await asyncpg.connect(platform.database_url, server_settings={"search_path": "transfer"})
    try:
        await store_accounts.register_accounts(
            conn, [Account(tenant, a, Owner.TENANT) for a in ids]
        )
    finally:
        await conn.close()
