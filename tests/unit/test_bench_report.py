"""The benchmark report writer (benchmarks/report_writer.py) fed made-up figures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# benchmarks/ is not an installed package: load the writer by file (it imports no
# other benchmark module)
_spec = importlib.util.spec_from_file_location(
    "report_writer", Path(__file__).parents[2] / "benchmarks" / "report_writer.py"
)
assert _spec is not None and _spec.loader is not None
report_writer = importlib.util.module_from_spec(_spec)
sys.modules["report_writer"] = report_writer
_spec.loader.exec_module(report_writer)
RunInfo, write_report = report_writer.RunInfo, report_writer.write_report

FIGS = {
    "transfer": {
        "figures": {"new_key_per_s": 800.0, "pgbench_tps": 1000.0, "replay_per_s": 1600.0},
        "cdfs": {"new-key accepts (wrk)": [(10.0, 0.5), (30.0, 0.99), (40.0, 1.0)]},
        "series": {"new-key accepts (wrk)": [(0.0, 790.0), (1.0, 810.0)]},
    },
    "backbone": {
        "figures": {"platform_eps": 1000.0, "raw_eps": 4000.0, "platform_p99_ms": 20.0},
        "cdfs": {},
        "series": {},
    },
    "e2e": {
        "figures": {
            "p99_ms": 150.0,
            "hop_201_to_fan_out_stored_p50_ms": 12.0,
            "hop_201_to_fan_out_stored_p99_ms": 40.0,
        },
        "cdfs": {},
        "series": {},
    },
}


def test_report_lays_figures_beside_baselines_with_goals(tmp_path: Path) -> None:
    info = RunInfo(
        "2026-01-01 00:00 UTC", "abc1234", "make bench", "a stack", 2, (1.0, 2.0, 3.0), (4, 5, 6)
    )
    info.failures["audit"] = "exited with 1 (logs/audit.txt)"
    readme = write_report(FIGS, info, tmp_path, {"transfer": "wrk against the service"})
    text = readme.read_text()
    assert "at start 1.00, 2.00, 3.00, at end 4.00, 5.00, 6.00" in text
    lines = text.splitlines()

    def row(label: str) -> str:
        return next(line for line in lines if line.startswith(f"| {label} |"))

    new_key = row("new-key transfer accepts (wrk)")
    assert "| 800 /s |" in new_key and "1,000 /s" in new_key and "| 0.80 |" in new_key
    assert new_key.endswith("| met |")
    assert row("replays (wrk)").endswith("| **unmet** |")  # 2x, goal 3x
    assert row("outbox → Kafka → inbox").endswith("| **unmet** |")  # 25% of raw
    assert row("backbone p99 at 1,000 events/s").endswith("| met |")  # 20 ms <= 50
    assert row("audit append").endswith("| not run |")
    assert row("intent accepted → webhook received, p99, paced at 200/s").endswith("| **unmet** |")
    assert row("201 → fan-out stored") == "| 201 → fan-out stored | 12 ms | 40 ms |"
    assert "- `audit`: exited with 1 (logs/audit.txt)" in lines
    for png in ("transfer-latency-cdf.png", "transfer-throughput.png"):
        assert f"]({png})" in text
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "backbone-latency-cdf.png").exists()  # no curves, no plot


def test_report_links_the_flame_graphs_beside_it(tmp_path: Path) -> None:
    (tmp_path / "transfer-new.svg").write_text("<svg/>")
    (tmp_path / "transfer-replay.svg").write_text("<svg/>")
    info = RunInfo(
        "2026-01-01 00:00 UTC", "abc1234", "make bench", "a stack", 2, (1, 1, 1), (1, 1, 1)
    )
    text = write_report(FIGS, info, tmp_path, {}).read_text()
    assert "## Flame graphs" in text
    assert "- [transfer-new](transfer-new.svg)" in text
    assert "- [transfer-replay](transfer-replay.svg)" in text
