"""A fast local webhook receiver for bench_webhooks: 204 to everything, keeps stats.

Run as ``python -m benchmarks.bench_webhooks_receiver <port>``. ``GET /stats``
returns the count and the event→receipt latencies (from the ``t0`` the benchmark
puts in each event's ``note``); ``POST /reset`` clears them.
"""

from __future__ import annotations

import json
import sys
import time

import uvicorn

count = 0
latencies: list[float] = []


async def app(scope, receive, send):
    global count, latencies
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        if m["type"] == "http.disconnect":
            return
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    path = scope["path"]
    out = b""
    if path == "/stats":
        out = json.dumps({"count": count, "latencies": latencies}).encode()
    elif path == "/reset":
        count, latencies = 0, []
    else:
        count += 1
        try:
            note = json.loads(body)["data"]["note"]
            if note:
                latencies.append(time.time() - float(note))
        except (ValueError, KeyError, TypeError):
            pass
    await send({"type": "http.response.start", "status": 200 if out else 204, "headers": []})
    await send({"type": "http.response.body", "body": out})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
