"""Each service's delivery health from its public ``/metrics`` (Prometheus text format,
scraped like Prometheus does; operators only): outbox lag, consumer lag and dead
letters not yet redriven per consumer and topic, dead-lettered and consumed messages,
background tasks that are down, calls on deprecated API versions by client."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class ServiceHealth:
    name: str
    reachable: bool = True
    outbox_lag_s: float | None = None
    consumer_lag: dict[str, float] = field(default_factory=dict)  # "consumer ← topic"
    dlt_depth: dict[str, float] = field(default_factory=dict)  # "consumer → topic"
    dead_lettered: dict[str, float] = field(default_factory=dict)  # "consumer → topic"
    consumed: dict[str, float] = field(default_factory=dict)  # "consumer: outcome"
    tasks_down: list[str] = field(default_factory=list)
    deprecated_calls: dict[str, float] = field(default_factory=dict)  # "client on version"


def parse(name: str, text: str) -> ServiceHealth:
    """The health figures of one service's metrics page."""
    health = ServiceHealth(name)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "clearway_outbox_lag_seconds":
                health.outbox_lag_s = max(health.outbox_lag_s or 0.0, sample.value)
            elif sample.name == "clearway_consumer_lag_messages":
                key = f"{labels.get('consumer')} ← {labels.get('topic')}"
                health.consumer_lag[key] = sample.value
            elif sample.name == "clearway_dlt_depth_messages":
                key = f"{labels.get('consumer')} → {labels.get('topic')}"
                health.dlt_depth[key] = sample.value
            elif sample.name == "clearway_dlt_messages_total":
                key = f"{labels.get('consumer')} → {labels.get('topic')}"
                health.dead_lettered[key] = sample.value
            elif sample.name == "clearway_consumer_messages_total":
                key = f"{labels.get('consumer')}: {labels.get('outcome')}"
                health.consumed[key] = sample.value
            elif sample.name == "clearway_deprecated_calls_total":
                key = f"{labels.get('client')} on {labels.get('version')}"
                health.deprecated_calls[key] = health.deprecated_calls.get(key, 0) + sample.value
            elif sample.name == "clearway_task_up" and sample.value == 0:
                health.tasks_down.append(str(labels.get("task")))
    return health


async def scrape(http: httpx.AsyncClient, bases: dict[str, str]) -> list[ServiceHealth]:
    out = []
    for name, base in sorted(bases.items()):
        try:
            r = await http.get(f"{base}/metrics")
            r.raise_for_status()
            out.append(parse(name, r.text))
        except (httpx.HTTPError, ValueError):
            out.append(ServiceHealth(name, reachable=False))
    return out
