"""Intent accepted → signed webhook received at a partner's receiver, paced (issue #17).

    .venv/bin/python -m benchmarks.bench_e2e [--rate 200] [--seconds 10]

The transfer service (its own process, as in bench_transfer: relay on, executor off)
takes ``POST /v1/transfers`` at a paced ``--rate`` (a small Python client: each
intent's own timing is needed, which a load generator's summary does not give); its
``transfer.created`` event goes outbox → relay → Kafka → the webhooks service's
fan-out (in this process) → a dispatcher process (``python -m clearway.webhooks``) → a
signed POST to a receiver in this process, which verifies the Standard Webhooks
signature with the partner package (``clearway_webhook_verify``).

Prints p50/p99 from the 201 received to the verified webhook received, and the
breakdown by hop from timestamps the run records, all on this host's clock: the 201
at the client; ``messages.created_at`` in the webhooks database (the fan-out's
transaction, after the relay and Kafka); the receiver's arrival time. (Not from trace
spans: the services export spans only when an OTLP endpoint is configured, and a
collector on this 2-core machine would take CPU the run measures; ADR 0046.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import asyncpg
from clearway_webhook_verify import Verifier

from benchmarks.bench_transfer import RawHttp, per_second, request_bytes, transfer_service
from benchmarks.bench_webhooks import dispatcher_processes
from benchmarks.common import cdf, emit, fresh_database, pct, stack, summary
from clearway.shared.auth import Principal
from clearway.shared.kafka import ensure_topics
from clearway.shared.settings import PlatformSettings
from clearway.shared.testing.receiver import VerifyingReceiver
from clearway.webhooks import handlers
from clearway.webhooks.bootstrap import build_app, make_context
from clearway.webhooks.settings import WebhooksSettings

TENANT = "ten_b"
TRANSFER_EVENTS = "clearway.transfer.events.v1"
CONNECTIONS = 16


def first_arrivals(receiver: VerifyingReceiver) -> dict[str, float]:
    """When each transfer's first verified webhook arrived (epoch seconds)."""
    arrived: dict[str, float] = {}
    for event in receiver.events:
        arrived.setdefault(event["data"]["transfer_id"], event["arrived_at"])
    return arrived


async def paced(port: int, token: str, rate: int, seconds: float) -> dict[str, float]:
    """POST ``rate * seconds`` new intents on schedule; transfer id -> time of its 201."""
    n = int(rate * seconds)
    accepted: dict[str, float] = {}
    run = os.urandom(4).hex()
    t0 = time.monotonic() + 0.2

    async def worker(w: int) -> None:
        http = RawHttp(port)
        try:
            for i in range(w, n, CONNECTIONS):
                await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                status, body = await http.post(request_bytes(token, f"e2e-{run}-{i}"))
                if status == 201:
                    accepted[json.loads(body)["id"]] = time.time()
        finally:
            http.close()

    await asyncio.gather(*(worker(w) for w in range(CONNECTIONS)))
    return accepted


async def stored_at(db: str, ids: list[str]) -> dict[str, float]:
    """When the webhooks fan-out stored each transfer's message (epoch seconds)."""
    conn = await asyncpg.connect(db, server_settings={"search_path": "webhooks"})
    try:
        rows = await conn.fetch(
            "SELECT convert_from(payload, 'UTF8')::jsonb -> 'data' ->> 'transfer_id' AS id,"
            " extract(epoch FROM created_at)::float8 AS t FROM messages"
            " WHERE event_type = 'transfer.created'"
        )
    finally:
        await conn.close()
    wanted = set(ids)
    return {r["id"]: r["t"] for r in rows if r["id"] in wanted}


async def main(rate: int, seconds: float) -> dict[str, float]:
    receiver = VerifyingReceiver()
    async with receiver.serving() as hook_url:
        with stack() as (admin, kafka):
            async with transfer_service(admin, kafka) as svc:
                platform = PlatformSettings(
                    database_url=await fresh_database(admin),
                    kafka_bootstrap=kafka,
                    topic_prefix=svc.topic_prefix,
                )
                await ensure_topics(platform.kafka, [platform.topic(TRANSFER_EVENTS)])
                settings = WebhooksSettings(
                    platform=platform,
                    allow_networks=("127.0.0.0/8",),
                    poll_interval_s=0.02,
                    run_relay=False,
                    run_dispatcher=False,
                )
                app = build_app(settings)
                async with app.router.lifespan_context(app):
                    principal = Principal(
                        "usr_bench", "cli_bench", TENANT, frozenset(), None, "at_b", None, None
                    )  # type: ignore[arg-type]
                    async with app.state.pool.acquire() as conn:
                        _, secret = await handlers.create_endpoint(
                            make_context(settings),
                            conn,
                            principal,
                            TENANT,
                            url=hook_url,
                            description="",
                            event_types=["transfer.created"],
                            rate_limit_per_s=None,
                        )
                    receiver.verifier = Verifier([secret])
                    with dispatcher_processes(platform, 1, 2):
                        # warm-up: connections, caches, the consumer's partitions assigned
                        await paced(svc.ports[0], svc.token, 20, 2)
                        deadline = time.monotonic() + 60
                        while len(receiver.events) < 40 and time.monotonic() < deadline:
                            await asyncio.sleep(0.1)
                        receiver.events.clear()
                        accepted = await paced(svc.ports[0], svc.token, rate, seconds)
                        deadline = time.monotonic() + 60
                        while (
                            len(set(accepted) - set(first_arrivals(receiver))) > 0
                            and time.monotonic() < deadline
                        ):
                            await asyncio.sleep(0.1)
                    stored = await stored_at(platform.database_url, list(accepted))
    arrived = first_arrivals(receiver)
    got = [t for t in accepted if t in arrived]
    total = [arrived[t] - accepted[t] for t in got]
    fan_out = [stored[t] - accepted[t] for t in got if t in stored]
    dispatch = [arrived[t] - stored[t] for t in got if t in stored]
    missing = int(rate * seconds) - len(got)
    start = min(accepted.values(), default=0.0)
    span = max(accepted.values(), default=0.0) - start
    achieved = len(accepted) / span if span > 0 else float("nan")
    print(f"\n== intent accepted → signed webhook received, paced {rate}/s for {seconds:.0f} s ==")
    print(f"intents accepted      {achieved:.0f}/s (paced at {rate}/s)")
    print(
        f"end to end            {summary(total)}"
        f"   ({missing} not received, {receiver.rejected} bad signatures)"
    )
    print(f"  201 → fan-out stored   {summary(fan_out)}   (relay, Kafka, fan-out commit)")
    print(f"  stored → received      {summary(dispatch)}   (dispatcher poll, sign, POST)")
    figures = {
        "rate": float(rate),
        "accepted_per_s": achieved,
        "p50_ms": pct(total, 50) * 1000,
        "p99_ms": pct(total, 99) * 1000,
        "missing": float(missing),
        "hop_201_to_fan_out_stored_p50_ms": pct(fan_out, 50) * 1000,
        "hop_201_to_fan_out_stored_p99_ms": pct(fan_out, 99) * 1000,
        "hop_stored_to_received_p50_ms": pct(dispatch, 50) * 1000,
        "hop_stored_to_received_p99_ms": pct(dispatch, 99) * 1000,
    }
    received = per_second([arrived[t] for t in got], start)
    emit(
        "e2e",
        figures,
        cdfs={
            f"201 → webhook received @{rate}/s": cdf(total),
            "201 → fan-out stored": cdf(fan_out),
            "stored → received": cdf(dispatch),
        },
        series={
            "intents accepted (201)": per_second(list(accepted.values()), start),
            "webhooks received": received,
        },
    )
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    asyncio.run(main(a.rate, a.seconds))
