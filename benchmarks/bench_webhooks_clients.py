"""Bare HTTP client loops against the compiled receiver: which client is fastest here.

The dispatcher's client was chosen with this (docs/adr/0011-webhook-client-aiohttp.md).
Each candidate posts the same signed-size JSON bodies with the same concurrency to
the Go receiver of ``benchmarks/webhooks_receiver`` over kept-alive connections.

    python -m benchmarks.bench_webhooks_clients [--n 5000] [--concurrency 64] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

from benchmarks.bench_webhooks_receiver import compiled_receiver

BODY = b'{"data":{"amount":1,"id":"b_1","note":null},"event_id":"evt_1","timestamp":"2026-01-01T00:00:00Z","type":"platform.test_event"}'  # noqa: E501
HEADERS = {"content-type": "application/json", "webhook-id": "msg_x", "webhook-timestamp": "1"}


async def _run(
    n: int, concurrency: int, post: Callable[[], Awaitable[None]]
) -> tuple[float, float]:
    """(posts/s, the client's CPU seconds per post)."""
    left = n

    async def loop() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await post()

    t, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return n / (time.perf_counter() - t), (time.process_time() - cpu) / n


async def httpx_loop(url: str, n: int, concurrency: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def post() -> None:
            r = await client.post(url, content=BODY, headers=HEADERS)
            assert r.status_code == 204

        return await _run(n, concurrency, post)


async def aiohttp_loop(url: str, n: int, concurrency: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as s:

        async def post() -> None:
            async with s.post(url, data=BODY, headers=HEADERS) as r:
                await r.read()
                assert r.status == 204

        return await _run(n, concurrency, post)


CANDIDATES = {"aiohttp": aiohttp_loop, "httpx": httpx_loop}


async def fastest(url: str, n: int, concurrency: int) -> tuple[str, float]:
    """Run every candidate once (after a warm-up); the fastest (name, posts/s)."""
    best = ("", 0.0)
    for name, loop in CANDIDATES.items():
        await loop(url, min(n, 500), concurrency)
        rate, cpu = await loop(url, n, concurrency)
        print(
            f"  bare {name:8s} {rate:8,.0f} posts/s (concurrency {concurrency},"
            f" client CPU {cpu * 1e6:.0f} µs/post)"
        )
        if rate > best[1]:
            best = (name, rate)
    return best


async def main(n: int, concurrency: int) -> None:
    with compiled_receiver() as base:
        await fastest(f"{base}/hook", n, concurrency)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--uvloop", action="store_true")
    a = ap.parse_args()
    if a.uvloop:
        import uvloop

        uvloop.run(main(a.n, a.concurrency))
    else:
        asyncio.run(main(a.n, a.concurrency))
