"""``create_app``: a FastAPI application with every Clearway HTTP convention installed."""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.types import Lifespan

from clearway.shared.deprecations import DeprecationLog
from clearway.shared.http.contract import install_contract
from clearway.shared.http.edge import EdgeMiddleware
from clearway.shared.http.health import HEALTH_PATH, READY_PATH, ReadinessCheck, health_router
from clearway.shared.http.hygiene import DEFAULT_MAX_BODY_BYTES
from clearway.shared.http.paging import CursorCodec, cursor_key
from clearway.shared.http.problems import install_problem_handlers
from clearway.shared.http.startup import Startup, resilient
from clearway.shared.http.versioning import ApiVersions, platform_versions
from clearway.shared.metrics import mount_metrics

METRICS_PATH = "/metrics"
# Probes and scrapers do not speak Clearway-Version; these paths ignore it.
OPS_PATHS = frozenset({HEALTH_PATH, READY_PATH, METRICS_PATH})


def create_app(
    service: str,
    *,
    title: str,
    version: str = "1.0.0",
    lifespan: Lifespan[FastAPI] | None = None,
    api_versions: ApiVersions | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    cursor_secret: bytes | None = None,
) -> FastAPI:
    """A FastAPI app for ``service`` with problem+json errors, correlation ids,
    dated versioning, request metrics, ``/metrics``, ``/healthz`` and ``/readyz``.

    Every request body is bounded by ``max_body_bytes`` (413 past it, chunked
    bodies included) and every path, query, header and JSON or form string is
    free of control characters (422 naming the field) before a route runs; a
    database or broker that cannot be reached is a 503 with ``Retry-After``.

    A ``lifespan`` that fails because a dependency is unreachable does not stop the
    process: the app serves degraded and retries it in the background
    (``http.startup``, docs/design.md §12).

    Services add their routers under ``/v1`` and append async readiness checks
    to ``app.state.readiness_checks``. Middleware a service adds later wraps
    this edge, so it runs before the correlation id is bound.

    The OpenAPI document declares what the kit answers on every operation: its
    problems (problem+json) and the bearer scheme with each operation's scopes
    (``contract``).

    ``api_versions`` defaults to the platform's dated versions (docs/design.md §10):
    JSON responses are rendered at the current one and downgraded at the edge.

    ``cursor_secret`` keys the list cursors (``paging``): the service's
    ``ServiceSettings.cursor_secret`` (random per process when unset).
    """
    versions = api_versions or platform_versions()
    startup = Startup()
    app = FastAPI(
        title=title,
        version=version,
        lifespan=None if lifespan is None else resilient(lifespan, startup),
    )
    app.state.service = service
    app.state.startup = startup
    app.state.api_versions = versions
    # Calls on deprecated versions; a service flushes it with deprecations.deprecation_jobs.
    app.state.deprecation_log = DeprecationLog()
    app.state.cursors = CursorCodec(cursor_key(service, cursor_secret))
    readiness_checks: list[ReadinessCheck] = []
    app.state.readiness_checks = readiness_checks
    install_problem_handlers(app)
    install_contract(app)
    app.add_middleware(
        EdgeMiddleware,
        service=service,
        versions=versions,
        unversioned=OPS_PATHS,
        max_body_bytes=max_body_bytes,
        usage=app.state.deprecation_log,
        startup=startup,
    )
    app.include_router(health_router(service))
    mount_metrics(app, path=METRICS_PATH)
    # Server spans continue an incoming W3C traceparent; the edge above tags them
    # with the correlation id. Probes and scrapes are not traced, and the
    # per-chunk ASGI receive/send spans (several per request, no debugging
    # value here) are left out: they cost more CPU than the handler on replays.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"]
    )
    return app
