"""Shared set-up for benchmarks: a real stack (env vars or the embedded one)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent


def _localstack():
    spec = importlib.util.spec_from_file_location("ls", ROOT / "deploy/local/localstack.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@contextmanager
def stack() -> Iterator[tuple[str, str]]:
    """(admin database url, kafka bootstrap) of a running stack."""
    db, kafka = os.environ.get("CLEARWAY_DATABASE_URL"), os.environ.get("CLEARWAY_KAFKA_BOOTSTRAP")
    if db and kafka:
        yield db, kafka
        return
    ls = _localstack()
    base = ROOT / ".local" / f"bench-stack-{os.getpid()}"
    # Durable settings (fsync on): benchmarks measure what production would see.
    ep = ls.up(base)
    try:
        yield ep.database_url, ep.kafka_bootstrap
    finally:
        ls.down(base)
        shutil.rmtree(base, ignore_errors=True)


async def fresh_database(admin_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (Linux /proc); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def summary(values: list[float]) -> str:
    return (
        f"p50={pct(values, 50) * 1000:.1f}ms p99={pct(values, 99) * 1000:.1f}ms "
        f"mean={statistics.fmean(values) * 1000:.1f}ms n={len(values)}"
    )


FIGURES_ENV = "CLEARWAY_BENCH_FIGURES"
"""When set, the file each benchmark appends its figures to (one JSON object a line):
``benchmarks/run.py`` sets it and reads them back, so it never parses printed text."""


def cdf(latencies_s: list[float], points: int = 200) -> list[tuple[float, float]]:
    """(latency in ms, fraction at or below it) at up to ``points`` quantiles: a latency
    CDF small enough to keep in the figures file."""
    values = sorted(latencies_s)
    if not values:
        return []
    n = len(values)
    step = max(1, n // points)
    picks = list(range(step - 1, n, step))
    if picks[-1] != n - 1:
        picks.append(n - 1)
    return [(values[i] * 1000, (i + 1) / n) for i in picks]


def emit(
    bench: str,
    figures: dict[str, float],
    *,
    cdfs: dict[str, list[tuple[float, float]]] | None = None,
    series: dict[str, list[tuple[float, float]]] | None = None,
) -> None:
    """Hand a benchmark's figures to ``benchmarks/run.py`` (ADR 0046): ``figures`` are
    named numbers (rates per second, latencies in ms, ratios); ``cdfs`` latency CDFs as
    (ms, fraction) points; ``series`` throughput over time as (seconds, per second).
    Appends one JSON line to ``$CLEARWAY_BENCH_FIGURES``; a benchmark run alone (the
    variable unset) only prints, as before."""
    path = os.environ.get(FIGURES_ENV)
    if not path:
        return
    line = {"bench": bench, "figures": figures, "cdfs": cdfs or {}, "series": series or {}}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
