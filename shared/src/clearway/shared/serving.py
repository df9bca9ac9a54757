"""Running a service process: logs, traces and the HTTP server (docs/design.md §12).

Every service's ``__main__`` ends in :func:`serve`, so where a service listens is
decided once: ``CLEARWAY_<SVC>_HOST`` and ``CLEARWAY_<SVC>_PORT``. The default host
is the loopback address (``make run``); a container sets ``0.0.0.0``, because its
published port, the orchestrator's probes and the other containers all arrive on
the container's own address, never on its loopback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn

from clearway.shared.logging import configure_logging
from clearway.shared.settings import ServiceSettings
from clearway.shared.telemetry import setup_tracing

__all__ = ["bind", "serve", "start"]

S = TypeVar("S", bound=ServiceSettings)


def start(service: str, settings: ServiceSettings) -> None:
    """JSON logs and trace export for the process of ``service`` (also for its
    one-shot commands, such as consent's ``seed``)."""
    configure_logging(service)
    setup_tracing(service, otlp_endpoint=settings.platform.otlp_endpoint)


def bind(settings: ServiceSettings) -> dict[str, Any]:
    """The server's address: ``host`` and ``port`` from the service's settings."""
    return {"host": settings.host, "port": settings.port}


def serve(service: str, settings: S, build_app: Callable[[S], Any]) -> None:
    """Start logging and tracing, then serve ``build_app(settings)`` until a signal
    stops it, on the address of :func:`bind` (uvicorn, its own logging off: the
    kit's JSON logging covers it)."""
    start(service, settings)
    uvicorn.run(build_app(settings), **bind(settings), log_config=None)
