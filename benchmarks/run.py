"""``make bench``: every benchmark on one stack, then ``benchmarks/report/README.md``.

    .venv/bin/python -m benchmarks.run [--full] [--only transfer,backbone] [--out DIR]

Starts the stack once (the one named by ``CLEARWAY_DATABASE_URL`` and
``CLEARWAY_KAFKA_BOOTSTRAP``, or the embedded one, durable settings), runs each
benchmark as its own process (``python -m benchmarks.bench_<name>``, exactly as it
runs alone) with ``$CLEARWAY_BENCH_FIGURES`` naming the file it appends its figures
to, keeps each one's printed output under ``<out>/logs/``, and writes the report with
:mod:`benchmarks.report_writer` (ADR 0046). Default sizes keep the whole run to
minutes; ``--full`` uses the sizes of issue #17's figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import FIGURES_ENV, ROOT, stack
from benchmarks.report_writer import RunInfo, write_report

#: in a benchmark's arguments: the report's folder (where its flame graphs go)
OUT = "{out}"
#: name -> (module, default arguments, --full arguments, how it is measured)
BENCHMARKS: dict[str, tuple[str, list[str], list[str], str]] = {
    "transfer": (
        "bench_transfer",
        ["--seconds", "5", "--pgbench-seconds", "5", "--flamegraphs", OUT],
        ["--seconds", "10", "--pgbench-seconds", "10", "--flamegraphs", OUT],
        "the transfer service (1 process, real JWTs, relay on, executor off) driven by wrk"
        " (16 connections, closed loop, a fresh Idempotency-Key per request; replays ask 500"
        " stored keys again); figures are wrk's own. Baseline: pgbench, 16 clients, a script"
        " of the same SQL, same database, right after. Then each path once more under the"
        " same load with py-spy attached, for its flame graph (not the figures).",
    ),
    "backbone": (
        "bench_backbone",
        ["--events", "10000", "--seconds", "5"],
        ["--events", "30000", "--seconds", "10"],
        "events written to the outbox, relayed to Kafka, applied through the inbox (effects"
        " committed); latency paced at 1,000/s. Baseline: raw aiokafka on the same broker.",
    ),
    "audit": (
        "bench_audit",
        ["--records", "50000"],
        ["--records", "1000000"],
        "the audit ingest path minus Kafka, batches of 500; full verification. Baselines:"
        " a plain batched INSERT of the same rows; plain SHA-256 over the same bytes.",
    ),
    "audit_blocks": (
        "bench_audit_blocks",
        ["--records", "50000"],
        ["--records", "200000"],
        "CPU per record of the compiled block check against a plain SHA-256 loop.",
    ),
    "webhooks": (
        "bench_webhooks",
        ["--events", "3000", "--paced-seconds", "5"],
        ["--events", "10000", "--paced-seconds", "10"],
        "Kafka → fan-out → signed POSTs to a compiled local receiver. Baseline: the fastest"
        " bare Python client posting the same bodies to the same receiver.",
    ),
    "consent": (
        "bench_consent",
        ["--trials", "30"],
        ["--trials", "100"],
        "a client disabled at consent → first 401 at transfer, webhooks, audit and consent."
        " Baseline: one record produced and consumed with raw aiokafka.",
    ),
    "crypto": (
        "bench_crypto",
        ["--records", "5000", "--sizes", "64,1024"],
        ["--records", "20000", "--sizes", "64,1024,16384"],
        "envelope seal + open (SoftHSM2) per CPU second. Baseline: raw AES-256-GCM.",
    ),
    "vault": (
        "bench_vault",
        ["--cards", "500"],
        ["--cards", "2000"],
        "card vault handlers (Postgres, SoftHSM2). Baselines: the envelope alone.",
    ),
    "e2e": (
        "bench_e2e",
        ["--seconds", "10"],
        ["--seconds", "30"],
        "transfers POSTed at a paced 200/s (Python client: per-intent timing) to the transfer"
        " service → outbox → Kafka → the webhooks service → a signed POST to a partner"
        " receiver; latency from the 201 to the verified webhook. Hops from timestamps the"
        " services record (see the benchmark's docstring).",
    ),
}


def git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def run_one(name: str, args: list[str], env: dict[str, str], logs: Path) -> tuple[float, str]:
    """Run one benchmark as its own process; (seconds, why it failed or '')."""
    module = BENCHMARKS[name][0]
    t0 = time.monotonic()
    with (logs / f"{name}.txt").open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{module}", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    why = "" if done.returncode == 0 else f"exited with {done.returncode} (logs/{name}.txt)"
    return time.monotonic() - t0, why


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="the sizes of issue #17's figures")
    ap.add_argument("--only", default="", help="comma-separated benchmarks (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "report")
    a = ap.parse_args()
    names = [n for n in a.only.split(",") if n] or list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        ap.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    logs = a.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    info = RunInfo(
        started=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=git_commit(),
        command="make bench" + (" ARGS=--full" if a.full else ""),
        stack=(
            "the running stack named by CLEARWAY_DATABASE_URL / CLEARWAY_KAFKA_BOOTSTRAP"
            if os.environ.get("CLEARWAY_DATABASE_URL")
            and os.environ.get("CLEARWAY_KAFKA_BOOTSTRAP")
            else "the embedded stack (Postgres and Kafka started for the run, fsync on)"
        ),
        cpus=os.cpu_count() or 0,
        load_start=os.getloadavg(),
        load_end=(0.0, 0.0, 0.0),
    )
    figures_file = Path(tempfile.mkstemp(prefix="bench-figures-", suffix=".jsonl")[1])
    with stack() as (db, kafka):
        env = {
            **os.environ,
            "CLEARWAY_DATABASE_URL": db,
            "CLEARWAY_KAFKA_BOOTSTRAP": kafka,
            FIGURES_ENV: str(figures_file),
        }
        for name in names:
            _, default, full, _ = BENCHMARKS[name]
            print(f"[bench] {name} ...", flush=True)
            args = [str(a.out) if arg == OUT else arg for arg in (full if a.full else default)]
            seconds, why = run_one(name, args, env, logs)
            info.durations_s[name] = seconds
            if why:
                info.failures[name] = why
            print(f"[bench] {name} {'FAILED: ' + why if why else 'done'} ({seconds:.0f} s)")
    info.load_end = os.getloadavg()
    figs = {}
    for line in figures_file.read_text().splitlines():
        data = json.loads(line)
        figs[data.pop("bench")] = data
    figures_file.unlink()
    (a.out / "figures.json").write_text(json.dumps(figs, indent=1) + "\n")
    readme = write_report(figs, info, a.out, {n: BENCHMARKS[n][3] for n in names})
    print(f"[bench] report: {readme.relative_to(ROOT) if readme.is_relative_to(ROOT) else readme}")
    return 1 if info.failures else 0


if __name__ == "__main__":
    sys.exit(main())
