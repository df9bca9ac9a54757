"""``benchmarks/report/README.md`` and its plots from the figures of one ``make bench`` run.

Every benchmark hands its figures to ``benchmarks/run.py`` through
:func:`benchmarks.common.emit` (JSON lines: named numbers, latency CDFs, throughput
over time); :func:`write_report` lays them out beside their same-run baselines, with the
issue's goals and whether each is met (ADR 0046). Pure: no benchmark runs here, so a
unit test feeds it made-up figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Figures = dict[str, dict[str, Any]]  # bench name -> {"figures", "cdfs", "series"}


@dataclass(frozen=True)
class Row:
    """One line of a table: a figure, its same-run baseline (if any) and its goal."""

    label: str
    bench: str
    figure: str
    unit: str
    baseline: tuple[str, str, str] | None = None  # (label, bench, figure)
    goal: str = ""
    met: Callable[[float, float | None], bool] | None = None  # (value, ratio) -> met


def _at_least(r: float) -> Callable[[float, float | None], bool]:
    return lambda _v, ratio: ratio is not None and ratio >= r


def _at_most(limit: float) -> Callable[[float, float | None], bool]:
    return lambda v, _r: v <= limit


#: the issue's table (#17), in its order
GOALS = [
    Row(
        "new-key transfer accepts (wrk)",
        "transfer",
        "new_key_per_s",
        "/s",
        ("pgbench, same SQL, same clients", "transfer", "pgbench_tps"),
        "≥ 50% of pgbench",
        _at_least(0.5),
    ),
    Row(
        "new-key transfer p99 (wrk)",
        "transfer",
        "new_key_p99_ms",
        "ms",
        ("pgbench p99, same SQL", "transfer", "pgbench_p99_ms"),
    ),
    Row(
        "replays (wrk)",
        "transfer",
        "replay_per_s",
        "/s",
        ("new-key accepts, same run", "transfer", "new_key_per_s"),
        "≥ 3x new-key",
        _at_least(3.0),
    ),
    Row(
        "outbox → Kafka → inbox",
        "backbone",
        "platform_eps",
        "events/s",
        ("raw aiokafka produce → consume", "backbone", "raw_eps"),
        "≥ 50% of raw",
        _at_least(0.5),
    ),
    Row(
        "backbone p99 at 1,000 events/s",
        "backbone",
        "platform_p99_ms",
        "ms",
        ("raw aiokafka p99, same rate", "backbone", "raw_p99_ms"),
        "≤ 50 ms",
        _at_most(50.0),
    ),
    Row(
        "audit append",
        "audit",
        "append_per_s",
        "records/s",
        ("plain batched INSERT, same rows", "audit", "plain_insert_per_s"),
        "≥ 50% of plain INSERT",
        _at_least(0.5),
    ),
    Row(
        "intent accepted → webhook received, p99, paced at 200/s",
        "e2e",
        "p99_ms",
        "ms",
        ("raw aiokafka p99 (backbone run)", "backbone", "raw_p99_ms"),
        "≤ 100 ms",
        _at_most(100.0),
    ),
    Row(
        "intents accepted during the end-to-end run (paced at 200/s)",
        "e2e",
        "accepted_per_s",
        "/s",
        ("new-key accepts under wrk (transfer run)", "transfer", "new_key_per_s"),
    ),
    Row(
        "intent accepted → webhook received, p50, paced at 200/s",
        "e2e",
        "p50_ms",
        "ms",
        ("raw aiokafka p50 (backbone run)", "backbone", "raw_p50_ms"),
    ),
]

#: the other benchmarks' figures, with the goals their own docstrings state
OTHERS = [
    Row("transfer service CPU per new-key request", "transfer", "new_key_cpu_ms", "ms"),
    Row("transfer service CPU per replay", "transfer", "replay_cpu_ms", "ms"),
    Row("wrk's own CPU per request (the load generator)", "transfer", "wrk_cpu_us", "µs"),
    Row(
        "webhook deliveries (Kafka → fan-out → signed POST)",
        "webhooks",
        "deliveries_per_s",
        "/s",
        ("fastest bare client, same payloads", "webhooks", "bare_posts_per_s"),
    ),
    Row(
        "webhooks event → delivery p99 (paced)",
        "webhooks",
        "p99_ms",
        "ms",
    ),
    Row(
        "client disabled → 401 at all four services, p99",
        "consent",
        "all_p99_ms",
        "ms",
        ("raw aiokafka produce → consume p99", "consent", "raw_p99_ms"),
        "≤ 200 ms",
        _at_most(200.0),
    ),
    Row(
        "audit full verification (reader threads, binary COPY via libpq)",
        "audit",
        "verify_pooled_per_s",
        "records/s",
        ("plain SHA-256 loop, same bytes", "audit", "sha256_per_s"),
        "≥ 50% of SHA-256",
        _at_least(0.5),
    ),
    Row(
        "audit block check, compiled (CPU per record)",
        "audit_blocks",
        "block_native_us",
        "µs",
        ("plain SHA-256 loop", "audit_blocks", "sha256_us"),
    ),
    Row(
        "envelope seal + open, 1 KiB (per CPU second)",
        "crypto",
        "envelope_1024_per_s",
        "/s",
        ("raw AES-GCM encrypt + decrypt", "crypto", "raw_1024_per_s"),
        "≥ 25% of raw",
        _at_least(0.25),
    ),
    Row(
        "vault tokenize",
        "vault",
        "tokenize_per_s",
        "/s",
        ("Envelope.seal alone", "vault", "seal_per_s"),
    ),
    Row(
        "vault detokenize",
        "vault",
        "detokenize_per_s",
        "/s",
        ("Envelope.open alone (warm cache)", "vault", "open_per_s"),
    ),
]


@dataclass
class RunInfo:
    """What the report header says about the run."""

    started: str
    commit: str
    command: str
    stack: str
    cpus: int
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float]
    durations_s: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # bench -> why


def _get(figs: Figures, bench: str, name: str) -> float | None:
    value = figs.get(bench, {}).get("figures", {}).get(name)
    return None if value is None or math.isnan(value) else float(value)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{text} {unit}".strip()


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.2g}"


def table(rows: list[Row], figs: Figures) -> list[str]:
    """Markdown lines: figure, value, same-run baseline, ratio, goal, met."""
    lines = [
        "| figure | this run | same-run baseline | ratio | goal | met |",
        "|---|---:|---|---:|---|---|",
    ]
    for row in rows:
        value = _get(figs, row.bench, row.figure)
        base = _get(figs, row.baseline[1], row.baseline[2]) if row.baseline else None
        ratio = value / base if value is not None and base else None
        base_text = f"{row.baseline[0]}: {_fmt(base, row.unit)}" if row.baseline else "—"
        if value is None:
            verdict = "not run"
        elif row.met is None:
            verdict = "—"
        else:
            verdict = "met" if row.met(value, ratio) else "**unmet**"
        lines.append(
            f"| {row.label} | {_fmt(value, row.unit)} | {base_text} | "
            f"{_ratio(ratio)} | {row.goal or '—'} | {verdict} |"
        )
    return lines


def plots(figs: Figures, out: Path) -> list[str]:
    """PNG files (latency CDFs, throughput over time) written to ``out``; their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for bench, data in sorted(figs.items()):
        for kind, xlabel, ylabel in (
            ("cdfs", "latency (ms, log scale)", "fraction of requests ≤ latency"),
            ("series", "seconds since start", "completed per second"),
        ):
            curves = {k: v for k, v in data.get(kind, {}).items() if v}
            if not curves:
                continue
            fig, ax = plt.subplots(figsize=(7, 4))
            for label, points in curves.items():
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=label, drawstyle="steps-post" if kind == "cdfs" else None)
            if kind == "cdfs":
                ax.set_xscale("log")
                ax.set_ylim(0, 1.01)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            title = "latency CDF" if kind == "cdfs" else "throughput over time"
            ax.set_title(f"{bench}: {title}")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
            fig.tight_layout()
            name = f"{bench}-{'latency-cdf' if kind == 'cdfs' else 'throughput'}.png"
            fig.savefig(out / name, dpi=90)
            plt.close(fig)
            written.append(name)
    return written


def hops(figs: Figures) -> list[str]:
    """The end-to-end run's breakdown by hop (figures named ``hop_<name>_p50_ms``/``_p99_ms``)."""
    e2e = figs.get("e2e", {}).get("figures", {})
    names = [k[4:-7] for k in e2e if k.startswith("hop_") and k.endswith("_p50_ms")]
    if not names:
        return []
    lines = ["| hop | p50 | p99 |", "|---|---:|---:|"]
    for name in names:
        p50, p99 = e2e.get(f"hop_{name}_p50_ms"), e2e.get(f"hop_{name}_p99_ms")
        label = name.replace("_to_", " → ").replace("fan_out", "fan-out").replace("_", " ")
        lines.append(f"| {label} | {_fmt(p50, 'ms')} | {_fmt(p99, 'ms')} |")
    return lines


def write_report(figs: Figures, info: RunInfo, out: Path, notes: dict[str, str]) -> Path:
    """Write ``out/README.md`` and the plots beside it; returns the README's path.
    ``notes``: a paragraph per benchmark (how it was measured), shown under the tables."""
    out.mkdir(parents=True, exist_ok=True)
    images = plots(figs, out)
    load = ", ".join
    lines = [
        "# Benchmark report",
        "",
        f"Generated by `{info.command}` on {info.started} at commit `{info.commit}`"
        " (benchmarks/run.py; how each figure is measured: ADR 0046 and each benchmark's"
        f" docstring), against {info.stack}.",
        "",
        f"**Noisy figures.** This machine has {info.cpus} CPUs and is shared: other work ran"
        " during the run. Load average (1, 5, 15 min) at start"
        f" {load(f'{x:.2f}' for x in info.load_start)}, at end"
        f" {load(f'{x:.2f}' for x in info.load_end)}. Each figure sits beside a baseline"
        " measured in the same run on the same stack, so the ratios are the figures to"
        " compare across runs.",
        "",
        "## The issue's figures (#17)",
        "",
        *table(GOALS, figs),
        "",
    ]
    breakdown = hops(figs)
    if breakdown:
        lines += ["### End to end, by hop", "", *breakdown, ""]
    lines += ["## Other benchmarks", "", *table(OTHERS, figs), ""]
    if info.failures:
        lines += ["## Benchmarks that did not finish", ""]
        lines += [f"- `{b}`: {why}" for b, why in sorted(info.failures.items())]
        lines.append("")
    if notes:
        lines += ["## How each was measured", ""]
        lines += [f"- **{b}**: {text}" for b, text in notes.items()]
        lines.append("")
    if images:
        lines += ["## Plots", ""]
        lines += [f"![{name[:-4]}]({name})" for name in images]
        lines.append("")
    graphs = sorted(out.glob("*.svg"))
    if graphs:
        lines += [
            "## Flame graphs",
            "",
            "py-spy samples of the service under the same wrk load, right after the measured"
            " runs (open the SVG in a browser: click to zoom, Ctrl-F to search). What remains"
            " on top and why: ADR 0051.",
            "",
        ]
        lines += [f"- [{svg.stem}]({svg.name})" for svg in graphs]
        lines.append("")
    if info.durations_s:
        lines += ["## Run times", "", "| benchmark | seconds |", "|---|---:|"]
        lines += [f"| {b} | {s:.0f} |" for b, s in info.durations_s.items()]
        lines += ["", "Each benchmark's own output: `logs/<benchmark>.txt`.", ""]
    readme = out / "README.md"
    readme.write_text("\n".join(lines))
    return readme
