"""Prometheus metrics every Clearway process exposes on ``GET /metrics`` (docs/design.md §11).

The metric objects live here, in the default registry, so the HTTP edge, the
outbox relay, the consumers and the webhook dispatcher share one definition of
each name and label set. Each service is scraped as its own target, so labels
carry ``service`` only where one process can hold several (the relay is keyed
by the service's schema); Prometheus adds ``job``/``instance`` to the rest.

Importing this module twice (a reload, or two import paths in a test run)
returns the already registered collectors instead of failing with
"Duplicated timeseries".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

_M = TypeVar("_M", Counter, Gauge, Histogram)


def _metric(
    kind: type[_M], name: str, documentation: str, labelnames: Sequence[str], **kwargs: Any
) -> _M:
    """The collector already registered under ``name``, or a new one of ``kind``."""
    # prometheus_client has no public lookup by name; the registry's own index is it.
    existing = REGISTRY._names_to_collectors.get(name)
    if existing is not None:
        if not isinstance(existing, kind):
            raise TypeError(f"metric {name!r} is already registered as {type(existing).__name__}")
        return existing
    return kind(name, documentation, labelnames, **kwargs)


# Consumers and webhooks wait on brokers and partners: buckets reach further than HTTP's.
_SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUEST_DURATION_SECONDS = _metric(
    Histogram,
    "clearway_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and status.",
    ("service", "method", "route", "status"),
)
DEPRECATED_CALLS_TOTAL = _metric(
    Counter,
    "clearway_deprecated_calls_total",
    "Calls on a deprecated Clearway-Version (header or pin), by client and feature"
    " (method and route template).",
    ("service", "client", "version", "feature"),
)
OUTBOX_LAG_SECONDS = _metric(
    Gauge,
    "clearway_outbox_lag_seconds",
    "Age of the oldest unpublished outbox row (0 when the outbox is empty).",
    ("service",),
)
OUTBOX_PUBLISHED_TOTAL = _metric(
    Counter,
    "clearway_outbox_published_total",
    "Outbox rows published to Kafka.",
    ("service",),
)
CONSUMER_LATENCY_SECONDS = _metric(
    Histogram,
    "clearway_consumer_latency_seconds",
    "Time to handle one consumed message or batch.",
    ("consumer",),
    buckets=_SLOW_BUCKETS,
)
CONSUMER_MESSAGES_TOTAL = _metric(
    Counter,
    "clearway_consumer_messages_total",
    "Consumed messages by outcome (applied, duplicate, dead_lettered, ...).",
    ("consumer", "outcome"),
)
CONSUMER_LAG_MESSAGES = _metric(
    Gauge,
    "clearway_consumer_lag_messages",
    "Records of a topic not yet applied by a consumer group (end offset minus committed"
    " offset, over the partitions this process holds).",
    ("consumer", "topic"),
)
DLT_DEPTH_MESSAGES = _metric(
    Gauge,
    "clearway_dlt_depth_messages",
    "Dead letters of a consumer group for a topic not yet redriven (end offset of"
    " <topic>.<consumer>.dlt minus the clearway-dlt-redrive group's offset).",
    ("consumer", "topic"),
)
DLT_MESSAGES_TOTAL = _metric(
    Counter,
    "clearway_dlt_messages_total",
    "Messages written to a dead-letter topic.",
    ("consumer", "topic"),
)
WEBHOOK_ATTEMPTS_TOTAL = _metric(
    Counter,
    "clearway_webhook_attempts_total",
    "Outbound webhook delivery attempts by endpoint and outcome.",
    ("endpoint", "outcome"),
)
REVOCATION_FEED_LAG_SECONDS = _metric(
    Gauge,
    "clearway_revocation_feed_lag_seconds",
    "Seconds since the revocation feed last had every record the broker held for its"
    " topic applied (grows while the feed is down or behind).",
    ("topic",),
)
AUDIT_VERIFICATIONS_TOTAL = _metric(
    Counter,
    "clearway_audit_verifications_total",
    "Audit log verification runs by outcome (verified, failed: the log does not verify,"
    " error: the run could not complete).",
    ("outcome",),
)
# Every outcome exists from the start at 0: an alert on increase() then sees the
# first failure (a counter first scraped at 1 shows no increase to Prometheus).
for _outcome in ("verified", "failed", "error"):
    AUDIT_VERIFICATIONS_TOTAL.labels(_outcome)
TASK_RESTARTS_TOTAL = _metric(
    Counter,
    "clearway_task_restarts_total",
    "Background tasks restarted by the supervisor after a crash.",
    ("service", "task"),
)
TASK_UP = _metric(
    Gauge,
    "clearway_task_up",
    "1 while a supervised background task runs and reports itself healthy, else 0.",
    ("service", "task"),
)


def mount_metrics(
    app: FastAPI, *, registry: CollectorRegistry = REGISTRY, path: str = "/metrics"
) -> None:
    """Serve ``registry`` on ``GET path`` in the exposition format the scraper asks for.

    Prometheus' text format by default; OpenMetrics when the ``Accept`` header
    asks for it (which is what carries exemplars).
    """

    async def metrics(request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), media_type=content_type)

    app.add_api_route(path, metrics, methods=["GET"], include_in_schema=False)
