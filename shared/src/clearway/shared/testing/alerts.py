"""Alert rules exercised against real ``/metrics`` output (tests only; ADR 0043).

A test makes an alert's condition true for real (a dead letter written, a
verification that fails, ...), scrapes ``GET /metrics`` before and after, and
hands the scraped samples to :func:`assert_fires`. That runs ``promtool test
rules`` (Prometheus' own evaluator, built by ``make promtool`` from the Go module
proxy) on ``deploy/prometheus/alerts.yaml`` with input series that hold the
"before" values for a while and the "after" values from then on, and checks the
alert is silent before and firing after, with the labels the test expects.

The rules are evaluated as written, except that their annotations are left out:
promtool compares annotations verbatim, and their templates are checked by
``promtool check rules`` instead.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from clearway.shared.testing.fixtures import repo_root


def rules_file() -> Path:
    return repo_root() / "deploy" / "prometheus" / "alerts.yaml"


def promtool() -> Path:
    """The promtool ``make promtool`` built (``.local/bin/promtool``)."""
    path = repo_root() / ".local" / "bin" / "promtool"
    assert path.exists(), "promtool is not built: make promtool"
    return path


async def scrape(app: Any) -> str:
    """The text of ``GET /metrics`` of an ASGI ``app`` (any app of ``create_app``)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://metrics"
    ) as client:
        r = await client.get("/metrics")
    r.raise_for_status()
    return r.text


@dataclass(frozen=True)
class Sample:
    """One sample of a scrape: the series name, its labels and value."""

    name: str
    labels: Mapping[str, str]
    value: float

    def selector(self, extra: Mapping[str, str]) -> str:
        labels = {**self.labels, **extra}
        inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
        return f"{self.name}{{{inner}}}"


def samples(exposition: str, name: str, **match: str) -> list[Sample]:
    """The samples called ``name`` whose labels include ``match``."""
    out = []
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
                out.append(Sample(s.name, dict(s.labels), float(s.value)))
    return out


@dataclass(frozen=True)
class Series:
    """A scraped series before and after the condition was made true.

    ``growth``: what the series gains per minute while the condition persists, as
    the test shows it rather than waiting an hour: 60 for a gauge that is an age in
    seconds (two scrapes show it growing with the clock), ``after - before`` for a
    counter of something that keeps happening (a receiver that keeps failing),
    0 for a state that stays (a dead letter waiting)."""

    before: Sample | None
    after: Sample
    growth: float = 0.0
    scrape_labels: Mapping[str, str] = field(default_factory=dict)


def _values(s: Series, switch: int, minutes: int) -> str:
    # No sample at all before a series first appears ("_" is promtool's gap).
    before = "_" if s.before is None else repr(s.before.value)
    after = [s.after.value + s.growth * i for i in range(minutes - switch)]
    return " ".join([before] * switch + [repr(v) for v in after])


def assert_fires(
    alert: str,
    series: Sequence[Series],
    expect: Mapping[str, str],
    *,
    switch_minute: int = 30,
    firing_after: int = 20,
) -> None:
    """Check with promtool that ``alert`` is silent while ``series`` hold their
    "before" values (minute 0 to ``switch_minute``) and fires with labels
    ``expect`` (plus the rule's own) ``firing_after`` minutes later (longer than
    any rule's ``for``, shorter than its range windows), one sample a minute."""
    minutes = switch_minute + firing_after + 1
    doc = yaml.safe_load(rules_file().read_text())
    rule = next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == alert)
    bare = {k: v for k, v in rule.items() if k != "annotations"}
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(json.dumps({"groups": [{"name": "under-test", "rules": [bare]}]}))
        test = {
            "rule_files": [str(rules)],
            "evaluation_interval": "1m",
            "tests": [
                {
                    "interval": "1m",
                    "input_series": [
                        {
                            "series": s.after.selector(s.scrape_labels),
                            "values": _values(s, switch_minute, minutes),
                        }
                        for s in series
                    ],
                    "alert_rule_test": [
                        {
                            "eval_time": f"{switch_minute - 1}m",
                            "alertname": alert,
                            "exp_alerts": [],
                        },
                        {
                            "eval_time": f"{minutes - 1}m",
                            "alertname": alert,
                            "exp_alerts": [{"exp_labels": {**expect, **rule.get("labels", {})}}],
                        },
                    ],
                }
            ],
        }
        path = Path(tmp) / "test.yaml"
        path.write_text(json.dumps(test))  # JSON is YAML
        done = subprocess.run(
            [str(promtool()), "test", "rules", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert done.returncode == 0, f"{alert}:\n{done.stdout}\n{done.stderr}\n{json.dumps(test)}"
