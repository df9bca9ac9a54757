"""Running a service process: logs, traces and the HTTP server (docs/design.md §12).

Every service's ``__main__`` ends in :func:`serve`, so where a service listens is
decided once: ``CLEARWAY_<SVC>_HOST`` and ``CLEARWAY_<SVC>_PORT``. The default host
is the loopback address (``make run``); a container sets ``0.0.0.0``, because its
published port, the orchestrator's probes and the other containers all arrive on
the container's own address, never on its loopback.

``CLEARWAY_<SVC>_HTTP_WORKERS`` runs that many worker processes on the one address
(uvicorn's supervisor: the socket bound once by the parent, each worker a full
replica of the service with its own pools, relay standby and consumer group
member; a worker that dies is replaced). How to size it: docs/design.md §12.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from secrets import token_bytes
from typing import Any, TypeVar

import uvicorn
from pydantic import SecretBytes
from uvicorn.supervisors import Multiprocess

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
    kit's JSON logging covers it), in ``settings.http_workers`` processes.

    With one worker the app runs in this process. With several, this process only
    binds the socket and supervises: each worker is started fresh (``spawn``: no
    state forked from the parent) and builds its own app, logging and tracing."""
    if settings.http_workers == 1:
        start(service, settings)
        uvicorn.run(build_app(settings), **bind(settings), log_config=None)
        return
    configure_logging(service)
    if settings.cursor_key is None:
        # one development cursor key for all the workers, so that a cursor one answered
        # is accepted by the next (production configures CURSOR_KEY)
        settings = settings.model_copy(update={"cursor_key": SecretBytes(token_bytes(32))})
    config = uvicorn.Config(
        functools.partial(_worker_app, service, settings, build_app),
        factory=True,  # each worker calls it: the app is built in the worker
        workers=settings.http_workers,
        # a worker answers the supervisor's ping once its interpreter has imported the
        # service: more than uvicorn's 5 s on a loaded host, where it would be killed
        # and respawned in a loop
        timeout_worker_healthcheck=30,
        **bind(settings),
        log_config=None,
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def _worker_app(service: str, settings: S, build_app: Callable[[S], Any]) -> Any:
    """The app of one worker process (called in the worker by uvicorn)."""
    start(service, settings)
    return build_app(settings)
