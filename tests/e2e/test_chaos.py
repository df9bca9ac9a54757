"""``make chaos`` at a small size: every invariant holds through the faults.

The run is the command itself (``python -m benchmarks.chaos``) with 150 intents
and short outages: its own private Postgres and Kafka on free ports, every
service as its own process, a lossy proxy, SIGKILLs, a broker kill, a Postgres
immediate stop, failing receivers (docs/adr/0047-chaos-run.md). The default size
(5,000 intents, a 60 s broker outage) is ``make chaos``.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from clearway.shared.testing.fixtures import repo_root

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

INVARIANTS = (
    "every accepted intent final",
    "one rail charge per transfer",
    "ledger balanced",
    "every event delivered or dead-lettered",
    "every event in the audit trail",
    "audit verification ok",
)


def test_every_invariant_holds_through_a_small_chaos_run():
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.chaos", "--intents", "150"],
        cwd=repo_root(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=360)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the run stops its private stack and services on it
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the chaos run did not finish in 360 s:\n{out[-12000:]}")
    assert proc.returncode == 0, out[-12000:]
    rows = {
        cells[1].strip(): cells[4].strip()
        for line in out.splitlines()
        if line.startswith("| ") and len(cells := line.split("|")) == 6
    }
    for name in INVARIANTS:
        assert rows.get(name) == "ok", (name, out[-12000:])
    assert "Result: all invariants hold." in out
