"""``make chaos``: the whole platform under faults, then its invariants as a table.

    python -m benchmarks.chaos [--intents 5000] [--report benchmarks/report/chaos.md]

A private embedded stack (never the shared one), every service as its own process,
a partner client retrying every error through a lossy TCP proxy and over Kafka,
SIGKILLs of each service, one Kafka broker kill with an outage, one Postgres
immediate stop, webhook receivers that fail then recover. Exits 1 when any
invariant is violated (docs/adr/0047-chaos-run.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

from .invariants import table
from .run import Plan, Result, run
from .system import ROOT, System, log


def _plan(a: argparse.Namespace) -> Plan:
    small = a.intents < 1000
    return Plan(
        intents=a.intents,
        rate=a.rate or (15.0 if small else 50.0),
        kafka_outage_s=a.kafka_outage_s if a.kafka_outage_s is not None else (3 if small else 60),
        kills_per_service=1 if small else 2,
        blip_s=3.0 if small else 10.0,
        outage_s=15.0 if small else 60.0,
        quiesce_timeout_s=a.quiesce_timeout_s or (60.0 if small else 900.0),
        # small runs end (and report) inside the test's bound even when an intent hangs
        client_patience_s=150.0 if small else 600.0,
        seed=a.seed,
    )


def _schedule(plan: Plan) -> str:
    """Webhook retry delays: the blip receiver recovers within them, the outage one not."""
    return "0,0.5,1,1.5" if plan.intents < 1000 else "0,1,2,4,8"


def report(result: Result, plan: Plan, total_s: float) -> str:
    lines = [
        "# Chaos run",
        "",
        f"`make chaos`: {plan.intents} intents at {plan.rate:g}/s, seed {plan.seed},"
        f" Kafka outage {plan.kafka_outage_s:g} s, {plan.kills_per_service} SIGKILL(s) per"
        f" service, receivers failing {plan.blip_s:g} s and {plan.outage_s:g} s;"
        f" {total_s:.0f} s in all"
        f" ({', '.join(f'{k} {v:.0f} s' for k, v in result.seconds.items())}).",
        "",
        table(result.checks),
        "",
        "## Faults injected",
        "",
        "| at | what |",
        "|---|---|",
        *(f"| t+{at:.1f} s | {what} |" for at, what in result.timeline),
        "",
        "Lossy proxy in front of the transfer API: "
        + ", ".join(f"{k} {v}" for k, v in sorted(result.proxy.items())),
        "",
        "Client: " + ", ".join(f"{k} {v}" for k, v in result.client.items()),
        "",
        f"Result: {'all invariants hold' if result.ok else 'INVARIANTS VIOLATED'}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    ap.add_argument("--intents", type=int, default=5000)
    ap.add_argument("--rate", type=float, help="intents per second (50; 15 below 1,000)")
    ap.add_argument("--kafka-outage-s", type=float, help="broker down this long (60; 3 small)")
    ap.add_argument("--quiesce-timeout-s", type=float, help="bound of the wait for quiescence")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--report", type=Path, help="write the report (Markdown) there")
    ap.add_argument("--keep", action="store_true", help="keep the stack's data and logs")
    a = ap.parse_args(argv)
    plan = _plan(a)
    # the retries are the point: the clients' own complaints about them are noise here
    logging.basicConfig(level=logging.CRITICAL)
    # a timeout's SIGTERM unwinds like ^C, so the stack and services are stopped
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_id = uuid.uuid4().hex[:8]
    base = ROOT / ".local" / f"chaos-{os.getpid()}"
    system = System(base, _schedule(plan))
    started = time.monotonic()
    result = None
    try:
        system.start_stack()
        result = asyncio.run(run(system, plan, run_id))
    finally:
        system.stop_services()
        system.stop_stack()
        if result is not None and result.ok and not a.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            log(f"stack data and service logs kept in {base}")
            if result is None or not result.ok:
                print(system.log_digest(), flush=True)
    text = report(result, plan, time.monotonic() - started)
    print(text, flush=True)
    if a.report:
        a.report.parent.mkdir(parents=True, exist_ok=True)
        a.report.write_text(text)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
