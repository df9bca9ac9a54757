"""Starting while the database is down: serve degraded, finish the start later
(docs/design.md §12, ADR 0053).

A service's lifespan migrates its schema, opens its pools and declares its
supervised tasks; all of that needs Postgres. ``create_app`` runs the lifespan
through :func:`resilient`:

- the first attempt runs as before, so a healthy start is unchanged and a start
  that fails for any other reason (a bug, bad configuration) still fails the
  process;
- when it fails because a dependency cannot be reached
  (:func:`~clearway.shared.http.problems.unavailable_dependency`: the database,
  an HSM that does not answer), the server starts anyway: ``/healthz`` answers 200,
  ``/readyz`` a 503 naming ``startup:<dependency>``, every other path a 503
  problem with ``Retry-After`` (the edge asks :class:`Startup`), and the lifespan is
  tried again in the background with :data:`START_BACKOFF` until it gets through;
  then the service serves as if it had started normally, without a restart.

Kafka is not on this path: services start their topics, producers, relays and
consumers as supervised tasks (``kafka_start``), so a broker outage never holds up
the HTTP start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.types import Lifespan

from clearway.shared.backoff import Backoff
from clearway.shared.crypto.keys import KeyUnavailable
from clearway.shared.http.problems import ProblemError, unavailable, unavailable_dependency

__all__ = ["START_BACKOFF", "Startup", "dependency_name", "resilient"]

log = logging.getLogger(__name__)

#: Delays between start attempts: the first retry within a second, then at most
#: five seconds apart, so a service is back within seconds of its database.
START_BACKOFF = Backoff(base=0.5, cap=5.0, jitter=0.2)

# Where the frames of a failed attempt ran, by the client library's package.
_LIBRARIES = (("asyncpg", "database"), ("aiokafka", "kafka"), ("httpx", "http"))


class Startup:
    """Where a service's start stands; the edge refuses requests while it waits."""

    def __init__(self) -> None:
        #: the dependency the last start attempt could not reach; ``None`` once started
        #: (and before any failure: a healthy start never waits)
        self.waiting_for: str | None = None
        self.attempts = 0

    def refusal(self) -> ProblemError | None:
        """The 503 problem to answer while the start waits for a dependency, else ``None``."""
        if self.waiting_for is None:
            return None
        return unavailable("The service is starting and waits for a dependency; retry shortly.")

    @property
    def __name__(self) -> str:  # the readiness check's name (``health._name``)
        return f"startup:{self.waiting_for or 'done'}"

    async def __call__(self) -> bool:
        """Readiness check: passes once the start went through."""
        return self.waiting_for is None


def dependency_name(exc: BaseException) -> str:
    """Which dependency ``exc`` says is unreachable: ``database``, ``kafka``, ``hsm``,
    ``http`` or, when the error does not tell, ``dependency``.

    Connection errors are the standard library's (``ConnectionRefusedError``), so the
    client library whose frames raised them names the dependency."""
    cause = unavailable_dependency(exc) or exc
    if isinstance(cause, KeyUnavailable):
        return "hsm"
    module = type(cause).__module__
    for library, name in _LIBRARIES:
        if module.startswith(library):
            return name
    for candidate in (cause, exc):
        for frame in traceback.extract_tb(candidate.__traceback__):
            for library, name in _LIBRARIES:
                if f"/{library}/" in frame.filename:
                    return name
    return "dependency"


def resilient(
    lifespan: Lifespan[Any], startup: Startup, *, backoff: Backoff = START_BACKOFF
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """``lifespan`` that survives an unreachable dependency at start (module docstring)."""

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        checks = list(app.state.readiness_checks)
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(lifespan(app))
            except Exception as exc:
                if unavailable_dependency(exc) is None:
                    raise
                _failed(app, startup, checks, exc)
                stop = asyncio.Event()
                retrying = asyncio.create_task(
                    _keep_starting(app, lifespan, startup, checks, backoff, stop),
                    name=f"{app.state.service}:startup",
                )
                stack.push_async_callback(_stop, retrying, startup, stop)
            yield

    return run


def _failed(app: Any, startup: Startup, checks: list[Any], exc: BaseException) -> None:
    """Undo what a failed attempt registered and say what it waits for."""
    app.state.readiness_checks[:] = [*checks, startup]
    startup.waiting_for = dependency_name(exc)
    startup.attempts += 1
    cause = unavailable_dependency(exc)
    # One line, no message: driver messages can carry host and user names.
    detail = type(cause or exc).__name__
    if cause is None:  # not an outage: a bug or a configuration the start cannot pass
        log.error("%s start failed (%s); retrying", app.state.service, detail, exc_info=exc)
    else:
        log.warning(
            "%s start waits for its %s (%s, attempt %d)",
            app.state.service,
            startup.waiting_for,
            detail,
            startup.attempts,
        )


async def _keep_starting(
    app: Any,
    lifespan: Lifespan[Any],
    startup: Startup,
    checks: list[Any],
    backoff: Backoff,
    stop: asyncio.Event,
) -> None:
    """Try the lifespan again until it enters; hold it open until ``stop``."""
    while True:
        await asyncio.sleep(backoff.delay(startup.attempts) or backoff.longest_step)
        entered = False
        try:
            async with lifespan(app):
                entered = True
                app.state.readiness_checks.remove(startup)
                startup.waiting_for = None
                log.info("%s started after %d attempts", app.state.service, startup.attempts)
                await stop.wait()
            return
        except Exception as exc:
            if entered:  # failed while stopping: nothing left to start
                log.error("%s stopped with an error", app.state.service, exc_info=exc)
                return
            _failed(app, startup, checks, exc)


async def _stop(retrying: asyncio.Task[None], startup: Startup, stop: asyncio.Event) -> None:
    stop.set()
    if startup.waiting_for is not None:  # still retrying: nothing to close
        retrying.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await retrying
