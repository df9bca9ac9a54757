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
replica), relay on, real JWT verification. The load comes from wrk (compiled, C; Debian's
package, installed by ``benchmarks/bootstrap.sh``; ``wrk_transfers.lua`` gives each request
its own Idempotency-Key), closed loop, as many connections as pgbench has clients: the
figures are wrk's own (ADR 0046). A small Python client only sends the warm-up requests
whose keys the replay run asks again.

    .venv/bin/python -m benchmarks.bench_transfer [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.common import cdf, cpu_seconds, emit, fresh_database, pct, stack, summary
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

WRK_SCRIPT = Path(__file__).with_name("wrk_transfers.lua")
REPLAY_KEYS = 500

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


@dataclass
class PgbenchRun:
    tps: float
    latencies: list[float]  # seconds, one per script run
    per_second: list[tuple[float, float]]  # (seconds since start, scripts completed)


def run_pgbench(db_url: str, clients: int, seconds: int) -> PgbenchRun:
    """pgbench running PGBENCH_SCRIPT; its per-transaction log (``-l``) gives the
    latencies and the throughput over time."""
    u = urlsplit(db_url)
    logs = tempfile.mkdtemp(prefix="bench-pgbench-")
    script = Path(logs) / "transfer.sql"
    script.write_text(PGBENCH_SCRIPT)
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
        "-l",
        f"--log-prefix={logs}/log",
        "-f",
        str(script),
        u.path.lstrip("/"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pgbench failed: {done.stderr[-2000:]}")
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
    # log lines: client_id transaction_no time_us script_no epoch_s epoch_us
    rows = [
        line.split() for log in Path(logs).glob("log*") for line in log.read_text().splitlines()
    ]
    shutil.rmtree(logs, ignore_errors=True)
    latencies = [int(r[2]) / 1e6 for r in rows]
    ends = [int(r[4]) + int(r[5]) / 1e6 for r in rows]
    return PgbenchRun(
        float(m.group(1)) if m else float("nan"), latencies, per_second(ends, min(ends, default=0))
    )


def per_second(ends: list[float], start: float) -> list[tuple[float, float]]:
    """Completions per whole second since ``start``."""
    counts: dict[int, int] = {}
    for t in ends:
        counts[int(t - start)] = counts.get(int(t - start), 0) + 1
    return [(float(k), float(v)) for k, v in sorted(counts.items())]


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client (pre-built requests), so that the client
    spends as little of this 2-core machine's CPU as possible; httpx costs about as
    much per request as the server does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of one request on the kept-alive connection."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        body = await self.reader.readexactly(int(m.group(1)) if m else 0)
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def request_bytes(token: str, key: str) -> bytes:
    body = json.dumps(BODY).encode()
    return (
        f"POST /v1/transfers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nIdempotency-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def warm(port: int, token: str, keys: list[str], concurrency: int) -> None:
    """Send ``keys`` once each (not measured): warms the service's caches and pools and
    leaves the keys the replay run asks again."""
    queue = [request_bytes(token, k) for k in keys]
    errors = 0

    async def worker() -> None:
        nonlocal errors
        http = RawHttp(port)
        try:
            while queue:
                if (await http.post(queue.pop()))[0] not in (200, 201):
                    errors += 1
        finally:
            http.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if errors:
        raise SystemExit(f"warm-up: {errors} non-2xx answers")


def py_spy(pids: list[int], seconds: int, svg: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling each of ``pids`` (and their worker processes) for ``seconds``,
    each writing a flame graph (``svg``, suffixed by the process when several); its
    sampling costs the service a few percent, so a profiled run's figures are not the
    report's (``--flamegraphs`` runs wrk once more for each graph)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--nonblocking",
                "--rate",
                "97",
                "--duration",
                str(seconds),
                "--format",
                "flamegraph",
                "--output",
                str(svg if len(pids) == 1 else svg.with_suffix(f".{i}.svg")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, pid in enumerate(pids)
    ]


async def run_wrk(
    ports: list[int], token: str, mode: str, prefix: str, pool: int, args: WrkArgs
) -> WrkRun:
    """One wrk process per replica (each its share of the connections), all at once."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    outs = [Path(tempfile.mkstemp(suffix=".json")[1]) for _ in ports]
    procs = [
        await asyncio.create_subprocess_exec(
            "wrk",
            "-t",
            str(args.threads),
            "-c",
            str(max(args.threads, args.connections // len(ports))),
            "-d",
            f"{args.seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
            f"http://127.0.0.1:{port}",
            "--",
            token,
            mode,
            prefix,
            str(pool),
            env={**os.environ, "WRK_JSON": str(out)},
            stdout=asyncio.subprocess.DEVNULL,
        )
        for port, out in zip(ports, outs, strict=True)
    ]
    for proc in procs:
        if await proc.wait() != 0:
            raise SystemExit(f"wrk exited with {proc.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # only wrk was reaped since
    runs = [json.loads(out.read_text()) for out in outs]
    for out in outs:
        out.unlink()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return WrkRun.merge(runs, cpu)


@dataclass
class WrkArgs:
    threads: int
    connections: int
    seconds: int


@dataclass
class WrkRun:
    """wrk's own figures; with several replicas, requests are summed and each
    percentile is the worst replica's (an upper bound)."""

    requests: int
    seconds: float
    errors: int
    percentiles_ms: list[tuple[float, float]]
    cpu_s: float  # wrk's own CPU (user + system)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def pct(self, p: float) -> float:
        return next(ms for q, ms in self.percentiles_ms if q >= p)

    @classmethod
    def merge(cls, runs: list[dict], cpu_s: float) -> WrkRun:
        points = [
            (q, max(r["percentiles_us"][i][1] for r in runs) / 1000)
            for i, (q, _) in enumerate(runs[0]["percentiles_us"])
        ]
        return cls(
            requests=sum(r["requests"] for r in runs),
            seconds=max(r["duration_us"] for r in runs) / 1e6,
            errors=sum(r["non_2xx_3xx"] + r["socket_errors"] for r in runs),
            percentiles_ms=points,
            cpu_s=cpu_s,
        )


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
        print(f"pgbench {run_pgbench(db, concurrency, seconds).tps:.0f} tps")


async def own_account(dsn: str, tenant: str, account: str) -> None:
    """Register ``account`` as ``tenant``'s own in the transfer service's registry."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "transfer"})
    try:
        await store_accounts.register_accounts(conn, [Account(tenant, account, Owner.TENANT)])
    finally:
        await conn.close()


async def throughput_over_time(dsn: str, since: float) -> list[tuple[float, float]]:
    """Transfers created per second since ``since`` (epoch seconds), read from the table
    after the run: nothing extra runs while it is measured."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM created_at)::float8 AS t FROM transfer.transfers"
            " WHERE created_at >= to_timestamp($1)",
            since,
        )
    finally:
        await conn.close()
    return per_second([r["t"] for r in rows], since)


@dataclass
class Service:
    """Transfer service processes running for a benchmark, and a token they accept."""

    db: str
    ports: list[int]
    procs: list[subprocess.Popen[bytes]]
    token: str
    topic_prefix: str

    def cpu(self) -> float:
        """CPU seconds of the service processes and their worker processes so far."""
        return sum(cpu_seconds(pid) for p in self.procs for pid in process_tree(p.pid))


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return [pid]
    return [pid, *(d for k in kids for d in process_tree(int(k)))]


@asynccontextmanager
async def transfer_service(
    admin_url: str, kafka: str, replicas: int = 1, executor: bool = False, workers: int = 1
) -> AsyncIterator[Service]:
    """A fresh database and ``replicas`` transfer service processes (``python -m
    clearway.transfer``, relay on, real JWT verification against a local JWKS), each
    with ``workers`` worker processes on its port, the tenant ``ten_b`` owning
    ``acct_payer1``; stopped (SIGINT) on exit."""
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
    db = await fresh_database(admin_url)
    prefix = f"bench{os.getpid()}."
    env = {
        **os.environ,
        "CLEARWAY_DATABASE_URL": db,
        "CLEARWAY_KAFKA_BOOTSTRAP": kafka,
        "CLEARWAY_OAUTH_ISSUER": issuer.issuer,
        "CLEARWAY_OAUTH_JWKS_URL": f"http://127.0.0.1:{jwks_port}/jwks.json",
        "CLEARWAY_TRANSFER_RUN_EXECUTOR": "1" if executor else "0",
        "CLEARWAY_TRANSFER_REVOCATION_FEED": "0",
        "CLEARWAY_TOPIC_PREFIX": prefix,
        "CLEARWAY_TRANSFER_HTTP_WORKERS": str(workers),
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
        # one worker answering is not all of them: a worker still starting would spend
        # the measured run's CPU (uvicorn logs this line once per worker)
        deadline = time.monotonic() + 300
        while log.read_text().count("Application startup complete") < replicas * workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"not every transfer worker started; see {log}")
            await asyncio.sleep(0.2)
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
        yield Service(db, ports, procs, token, prefix)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            proc.wait(timeout=60)
        jwks.should_exit = True
        await jwks_task


async def profile(svc: Service, wrk: WrkArgs, out: Path) -> None:
    """Flame graphs of the new-key and replay paths under the same wrk load, after the
    measured runs (``transfer-new.svg``, ``transfer-replay.svg`` in ``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    pids = [p.pid for p in svc.procs]
    for mode, prefix, pool in (("new", f"prof{os.getpid()}", 0), ("replay", "warm", REPLAY_KEYS)):
        spies = py_spy(pids, wrk.seconds, out / f"transfer-{mode}.svg")
        await run_wrk(svc.ports, svc.token, mode, prefix, pool, wrk)
        for spy in spies:
            spy.wait(timeout=60)
    print(f"flame graphs: {out}/transfer-new.svg, {out}/transfer-replay.svg")


async def main(
    wrk: WrkArgs,
    pgbench_seconds: int,
    replicas: int = 1,
    flamegraphs: Path | None = None,
    workers: int = 1,
) -> dict[str, float]:
    with stack() as (admin_url, kafka):
        async with transfer_service(admin_url, kafka, replicas, workers=workers) as svc:
            ports, token, cpu = svc.ports, svc.token, svc.cpu
            # the replay run asks these keys again (same body): answered from storage
            for port in ports:
                await warm(port, token, [f"warm-{i}" for i in range(REPLAY_KEYS)], 16)
            cpu0, since = cpu(), time.time()
            new = await run_wrk(ports, token, "new", f"new{os.getpid()}", 0, wrk)
            cpu1 = cpu()
            replay = await run_wrk(ports, token, "replay", "warm", REPLAY_KEYS, wrk)
            cpu2 = cpu()
            new_series = await throughput_over_time(svc.db, since)
            if flamegraphs is not None:
                await profile(svc, wrk, flamegraphs)
        pg = run_pgbench(svc.db, wrk.connections, pgbench_seconds)
    figures = {
        "new_key_per_s": new.rate,
        "new_key_p50_ms": new.pct(50),
        "new_key_p99_ms": new.pct(99),
        "replay_per_s": replay.rate,
        "replay_p50_ms": replay.pct(50),
        "replay_p99_ms": replay.pct(99),
        "pgbench_tps": pg.tps,
        "pgbench_p50_ms": pct(pg.latencies, 50) * 1000,
        "pgbench_p99_ms": pct(pg.latencies, 99) * 1000,
        "new_key_cpu_ms": (cpu1 - cpu0) / max(new.requests, 1) * 1000,
        "replay_cpu_ms": (cpu2 - cpu1) / max(replay.requests, 1) * 1000,
        "wrk_cpu_us": (new.cpu_s + replay.cpu_s) / max(new.requests + replay.requests, 1) * 1e6,
        "errors": float(new.errors + replay.errors),
        "replicas": float(replicas),
        "workers": float(workers),
        "connections": float(wrk.connections),
    }
    print(
        f"\n== transfer: POST /v1/transfers (HTTP + JWT + idempotency + outbox),"
        f" {replicas} replica(s) x {workers} worker(s),"
        f" wrk -t{wrk.threads} -c{wrk.connections} -d{wrk.seconds}s =="
    )
    for name, run in (("new-key accepts", new), ("replays", replay)):
        print(
            f"{name:16} {run.rate:8.0f}/s  p50={run.pct(50):.1f}ms p99={run.pct(99):.1f}ms"
            f" n={run.requests} errors={run.errors}"
        )
    print(
        f"service CPU per request: new-key {figures['new_key_cpu_ms']:.2f} ms,"
        f" replay {figures['replay_cpu_ms']:.2f} ms; wrk {figures['wrk_cpu_us']:.0f} µs"
        f"  (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(
        f"pgbench (same SQL, {wrk.connections} clients) {pg.tps:8.0f} tps  {summary(pg.latencies)}"
    )
    print(f"ratio new-key / pgbench  {new.rate / pg.tps:.2f}  (goal >= 0.50)")
    print(f"ratio replay / new-key   {replay.rate / new.rate:.2f}  (goal >= 3)")
    emit(
        "transfer",
        figures,
        cdfs={
            "new-key accepts (wrk)": [(ms, q / 100) for q, ms in new.percentiles_ms],
            "replays (wrk)": [(ms, q / 100) for q, ms in replay.percentiles_ms],
            "pgbench, same SQL": cdf(pg.latencies),
        },
        series={"new-key accepts (wrk)": new_series, "pgbench, same SQL": pg.per_second},
    )
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=10, help="wrk run length, each of the two")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections = pgbench clients")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    ap.add_argument("--pgbench-only", action="store_true", help="debug the baseline alone")
    ap.add_argument(
        "--replicas", type=int, default=1, help="transfer service processes sharing the load"
    )
    ap.add_argument(
        "--workers", type=int, default=1, help="worker processes of each replica (HTTP_WORKERS)"
    )
    ap.add_argument(
        "--flamegraphs",
        type=Path,
        default=None,
        help="also profile each path with py-spy under the same load; SVGs into this folder",
    )
    a = ap.parse_args()
    if a.pgbench_only:
        asyncio.run(pgbench_only(a.connections, a.pgbench_seconds))
    else:
        wrk_args = WrkArgs(a.threads, a.connections, a.seconds)
        asyncio.run(main(wrk_args, a.pgbench_seconds, a.replicas, a.flamegraphs, a.workers))
