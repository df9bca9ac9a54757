"""POST /v1/transfers: new-key accepts and replays, against pgbench on the same Postgres.

Prints, for the same run:
- new-key accepts/s and p50/p99 latency (each request claims a fresh key, inserts
  the transfer, its outbox row and the completed key: two transactions);
- replays/s (the same key and body again: one key lookup);
- pgbench running a custom script with the same SQL (the claim, then the transfer +
  outbox + key completion transaction) on the same database, same client count;
- the ratios (goal: accepts >= 50% of pgbench; replays >= 3x accepts).

The service runs as its own process (``python -m clearway.transfer``) with the
executor switched off (``CLEARWAY_TRANSFER_RUN_EXECUTOR=0``: in production it is its own
replica), relay on, real JWT verification; the client is httpx in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.common import cpu_seconds, fresh_database, pct, stack, summary
from clearway.shared.testing.issuer import TestIssuer
from clearway.transfer import store_accounts
from clearway.transfer.domain import Account, Owner

PGBENCH_SCRIPT = r"""
\set k random(1, 9000000000000000000)
SELECT state FROM idempotency_keys
  WHERE tenant='ten_pg' AND client_id='cli_pg' AND key = :client_id || '-' || :k;
BEGIN;
SET LOCAL synchronous_commit = off;
INSERT INTO idempotency_keys (tenant, client_id, key, fingerprint, state, reference, expires_at)
  VALUES ('ten_pg', 'cli_pg', :client_id || '-' || :k, md5(:k::text), 'in_flight',
          'CW' || upper(md5(:client_id || '-' || :k)), now() + interval '7 days')
  ON CONFLICT DO NOTHING RETURNING true;
COMMIT;
BEGIN;
SELECT tenant, id, owner, user_id, iban FROM accounts
  WHERE tenant='ten_pg' AND id = ANY(ARRAY['acct_payer1', 'acct_payee1']);
INSERT INTO transfers (id, tenant, client_id, reference, fingerprint, amount, currency, source,
  destination, description, metadata, status, actor, correlation_id)
  VALUES ('tr_pg' || :client_id || '_' || :k, 'ten_pg', 'cli_pg',
          'CW' || upper(md5(:client_id || '-' || :k)), md5(:k::text), 12500, 'EUR',
          'acct_payer1', 'acct_payee1', 'Invoice', '{"order": "ord_1"}', 'pending',
          '{"subject": "usr_1", "client_id": "cli_pg", "delegation": []}', 'corr_pg')
  ON CONFLICT (tenant, reference) DO NOTHING RETURNING *;
INSERT INTO outbox (event_id, topic, key, headers, payload)
  VALUES ('evt_pg' || :k, 'bench.pgbench.sink', 'tr_pg'::bytea,
          '[["ce_id", "evt"], ["ce_type", "transfer.created"]]',
          convert_to('{"transfer_id": "tr_pg", "amount": 12500, "currency": "EUR"}', 'UTF8'));
UPDATE idempotency_keys SET state='completed', status_code=201,
  response='{"id": "tr_pg", "status": "pending", "amount": 12500}'
  WHERE tenant='ten_pg' AND client_id='cli_pg' AND key = :client_id || '-' || :k;
COMMIT;
"""

BODY = {
    "amount": 12500,
    "currency": "EUR",
    "source": "acct_payer1",
    "destination": "acct_payee1",
    "description": "Invoice",
    "metadata": {"order": "ord_1"},
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pgbench_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)
    if not found:
        raise SystemExit("pgbench not found under /usr/lib/postgresql/*/bin")
    return found[0]


def run_pgbench(db_url: str, clients: int, seconds: int) -> float:
    u = urlsplit(db_url)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(PGBENCH_SCRIPT)
    env = {
        **os.environ,
        "PGOPTIONS": "-c search_path=transfer",
        "PGPASSWORD": u.password or "",
    }
    cmd = [
        pgbench_bin(),
        "-n",
        "-h",
        u.hostname or "127.0.0.1",
        "-p",
        str(u.port or 5432),
        "-U",
        u.username or "postgres",
        "-c",
        str(clients),
        "-j",
        "2",
        "-T",
        str(seconds),
        "-f",
        f.name,
        u.path.lstrip("/"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pgbench failed: {done.stderr[-2000:]}")
    out = done.stdout
    os.unlink(f.name)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    return float(m.group(1)) if m else float("nan")


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client (pre-built requests), so that the client
    spends as little of this 2-core machine's CPU as possible; httpx costs about as
    much per request as the server does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        await self.reader.readexactly(int(m.group(1)) if m else 0)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _request(token: str, key: str) -> bytes:
    body = json.dumps(BODY).encode()
    return (
        f"POST /v1/transfers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nIdempotency-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def drive(port: int, token: str, keys: list[str], concurrency: int) -> tuple[float, list]:
    latencies: list[float] = []
    requests = [_request(token, k) for k in keys]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    errors = 0

    async def worker() -> None:
        nonlocal errors
        http = RawHttp(port)
        try:
            while not queue.empty():
                req = queue.get_nowait()
                t0 = time.perf_counter()
                status = await http.post(req)
                latencies.append(time.perf_counter() - t0)
                if status not in (200, 201):
                    errors += 1
        finally:
            http.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    if errors:
        print(f"  ({errors} non-2xx answers)")
    return len(keys) / elapsed, latencies


async def drive_all(
    ports: list[int], token: str, keys: list[str], concurrency: int
) -> tuple[float, list]:
    """Spread the keys over every replica (the service is stateless: any replica
    answers any key, replays included) and time the whole."""
    t0 = time.perf_counter()
    parts = await asyncio.gather(
        *(
            drive(p, token, keys[i :: len(ports)], max(1, concurrency // len(ports)))
            for i, p in enumerate(ports)
        )
    )
    elapsed = time.perf_counter() - t0
    return len(keys) / elapsed, [x for _, lat in parts for x in lat]


async def pgbench_only(concurrency: int, seconds: int) -> None:
    from clearway.shared.db import load_migrations, migrate
    from clearway.transfer.bootstrap import MIGRATIONS

    with stack() as (admin_url, _):
        db = await fresh_database(admin_url)
        await migrate(
            db,
            schema="transfer",
            service="transfer",
            migrations=load_migrations(MIGRATIONS),
            role_password="bench",
        )
        print(f"pgbench {run_pgbench(db, concurrency, seconds):.0f} tps")


async def own_account(dsn: str, tenant: str, account: str) -> None:
    """Register ``account`` as ``tenant``'s own in the transfer service's registry."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "transfer"})
    try:
        await store_accounts.register_accounts(conn, [Account(tenant, account, Owner.TENANT)])
    finally:
        await conn.close()


async def main(n: int, concurrency: int, seconds: int, replicas: int = 1) -> None:
    issuer = TestIssuer()
    jwks_port = _port()
    ports = [_port() for _ in range(replicas)]
    jwks = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/jwks.json", lambda r: JSONResponse(issuer.jwks()))]),
            host="127.0.0.1",
            port=jwks_port,
            log_config=None,
            log_level="warning",
        )
    )
    jwks_task = asyncio.create_task(jwks.serve())
    with stack() as (admin_url, kafka):
        db = await fresh_database(admin_url)
        env = {
            **os.environ,
            "CLEARWAY_DATABASE_URL": db,
            "CLEARWAY_KAFKA_BOOTSTRAP": kafka,
            "CLEARWAY_OAUTH_ISSUER": issuer.issuer,
            "CLEARWAY_OAUTH_JWKS_URL": f"http://127.0.0.1:{jwks_port}/jwks.json",
            "CLEARWAY_TRANSFER_RUN_EXECUTOR": "0",
            "CLEARWAY_TRANSFER_REVOCATION_FEED": "0",
            "CLEARWAY_TOPIC_PREFIX": f"bench{os.getpid()}.",
        }
        log = Path(tempfile.gettempdir()) / f"bench_transfer_{os.getpid()}.log"
        procs = []
        with log.open("wb") as out:
            # BENCH_PROFILE=<path>: profile the service with cProfile (written on exit)
            prof = os.environ.get("BENCH_PROFILE")
            wrap = ["-m", "cProfile", "-o", prof] if prof else []
            for port in ports:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, *wrap, "-m", "clearway.transfer"],
                        env=env | {"CLEARWAY_TRANSFER_PORT": str(port)},
                        stdout=out,
                        stderr=out,
                    )
                )
        try:
            async with httpx.AsyncClient() as c:
                for proc, port in zip(procs, ports, strict=True):
                    url = f"http://127.0.0.1:{port}"
                    deadline = time.monotonic() + 300
                    while time.monotonic() < deadline:
                        if proc.poll() is not None:
                            raise SystemExit(f"transfer service exited; see {log}")
                        try:
                            if (await c.get(url + "/healthz")).status_code == 200:
                                break
                        except httpx.TransportError:
                            await asyncio.sleep(0.1)
            # the source is the tenant's own account, which client credentials may debit
            await own_account(db, "ten_b", "acct_payer1")
            token = issuer.token(
                sub="usr_b",
                client_id="cli_b",
                scopes=["payments:initiate"],
                audience="clearway-transfer",
                tenant="ten_b",
                ttl_s=3600,
            )

            def cpu() -> float:
                return sum(cpu_seconds(p.pid) for p in procs)

            await drive_all(ports, token, [f"warm-{i}" for i in range(200)], concurrency)
            cpu0 = cpu()
            new_rate, new_lat = await drive_all(
                ports, token, [f"new-{i}" for i in range(n)], concurrency
            )
            replay_keys = [f"new-{i % 500}" for i in range(n)]
            cpu1 = cpu()
            replay_rate, replay_lat = await drive_all(ports, token, replay_keys, concurrency)
            cpu2 = cpu()
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            for proc in procs:
                proc.wait(timeout=60)
        pg_tps = run_pgbench(db, concurrency, seconds)
    jwks.should_exit = True
    await jwks_task
    print(
        f"\n== transfer: POST /v1/transfers (HTTP + JWT + idempotency + outbox),"
        f" {replicas} replica(s) =="
    )
    print(f"new-key accepts  {new_rate:8.0f}/s  {summary(new_lat)}")
    print(f"replays          {replay_rate:8.0f}/s  {summary(replay_lat)}")
    print(
        f"service CPU per request: new-key {(cpu1 - cpu0) / n * 1000:.2f} ms,"
        f" replay {(cpu2 - cpu1) / n * 1000:.2f} ms"
        f"  (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(f"pgbench (same SQL, {concurrency} clients) {pg_tps:8.0f} tps")
    print(f"ratio new-key / pgbench  {new_rate / pg_tps:.2f}  (goal >= 0.50)")
    print(f"ratio replay / new-key   {replay_rate / new_rate:.2f}  (goal >= 3)")
    print(f"new-key p50={pct(new_lat, 50) * 1000:.1f}ms p99={pct(new_lat, 99) * 1000:.1f}ms")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    ap.add_argument("--pgbench-only", action="store_true", help="debug the baseline alone")
    ap.add_argument(
        "--replicas", type=int, default=1, help="transfer service processes sharing the load"
    )
    a = ap.parse_args()
    if a.pgbench_only:
        asyncio.run(pgbench_only(a.concurrency, a.pgbench_seconds))
    else:
        asyncio.run(main(a.requests, a.concurrency, a.pgbench_seconds, a.replicas))
