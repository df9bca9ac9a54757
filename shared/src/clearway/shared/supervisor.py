"""Supervised background work of a service process (docs/design.md §11, §12).

A service's lifespan declares its long-running tasks (outbox relay, Kafka
consumers, revocation feed) and periodic jobs (sweeps, purges, checkpoints) once,
on one :class:`Supervisor`::

    async with Supervisor(SERVICE, app) as tasks:
        tasks.task("outbox-relay", relay.run, health=relay.healthy)
        tasks.every("purge-expired-keys", 30.0, purge)
        yield

Work that ends (a replay job) is a task too: ``tasks.once(name, job)`` runs it,
restarting it with backoff after a crash, until it returns; then the task and its
readiness check go away.

The supervisor restarts a task that crashed (or returned) after a
:class:`~clearway.shared.backoff.Backoff` delay, logs every crash at ERROR and
counts it in ``clearway_task_restarts_total{service,task}``;
``clearway_task_up{service,task}`` is 1 while a task runs and says it is
healthy. Each critical task adds a readiness check named ``task:<name>``, so a
dead, restarting or unhealthy relay or consumer makes ``/readyz`` answer 503
naming it. Periodic jobs are not critical by default: a failed sweep is retried
and counted, but the service keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from clearway.shared.backoff import Backoff
from clearway.shared.metrics import TASK_RESTARTS_TOTAL, TASK_UP

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[Any]]
Health = Callable[[], bool]

#: Restart delays: quick first restarts, at most ten seconds apart when a task
#: keeps crashing; never gives up (the crash is logged every time).
RESTART_BACKOFF = Backoff(base=0.5, cap=10.0, jitter=0.2)


class TaskState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"  # crashed; waiting for its restart delay
    STOPPED = "stopped"


@dataclass
class TaskStatus:
    """What the supervisor knows about one task."""

    name: str
    critical: bool
    interval: float | None = None
    once: bool = False
    state: TaskState = TaskState.STARTING
    restarts: int = 0
    last_error: str | None = None
    health: Health | None = field(default=None, repr=False)

    @property
    def healthy(self) -> bool:
        if self.state is not TaskState.RUNNING:
            return False
        if self.health is None:
            return True
        try:
            return bool(self.health())
        except Exception:  # a health probe that raises says "unhealthy"
            return False


class Supervisor:
    """Runs, restarts and reports a service's background tasks."""

    def __init__(
        self,
        service: str,
        app: Any = None,
        *,
        backoff: Backoff = RESTART_BACKOFF,
        stable_after_s: float = 30.0,
    ) -> None:
        self.service = service
        self.app = app
        self.backoff = backoff
        self.stable_after_s = stable_after_s
        self.tasks: dict[str, TaskStatus] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._checks: dict[str, Callable[[], Awaitable[bool]]] = {}
        self._stopping = False
        if app is not None:
            app.state.supervisor = self

    def task(
        self, name: str, run: Job, *, health: Health | None = None, critical: bool = True
    ) -> None:
        """Run ``run()`` for the life of the service; restart it whenever it ends.

        ``health`` is a cheap synchronous probe (e.g. "the relay can publish") that
        readiness and ``clearway_task_up`` consult while the task runs.
        """
        self._add(TaskStatus(name, critical, health=health), lambda s: self._forever(s, run))

    def every(
        self,
        name: str,
        interval: float,
        job: Job,
        *,
        run_at_start: bool = False,
        critical: bool = False,
    ) -> None:
        """Run ``job()`` every ``interval`` seconds (first after one interval, or at once
        with ``run_at_start``); a job that raises is a crash and restarts the loop."""
        status = TaskStatus(name, critical, interval=interval)
        self._add(status, lambda s: self._periodic(s, interval, job, run_at_start))

    def once(
        self, name: str, job: Job, *, critical: bool = True, health: Health | None = None
    ) -> bool:
        """Run ``job()`` until it returns: a crash restarts it with backoff, like a task;
        once it has returned the task is forgotten (its readiness check and metrics go)
        and ``name`` may be used again. Returns ``False``, starting nothing, while a
        task of that name exists. ``health`` as for :meth:`task`: a start the service
        is not ready without says ``lambda: False`` until it is done."""
        if name in self.tasks or self._stopping:
            return False
        status = TaskStatus(name, critical, once=True, health=health)
        self._add(status, lambda s: self._forever(s, job))
        return True

    def status(self) -> dict[str, TaskStatus]:
        """Every declared task by name."""
        return dict(self.tasks)

    def failing(self) -> list[str]:
        """Critical tasks that are not running healthily."""
        return [s.name for s in self.tasks.values() if s.critical and not s.healthy]

    async def stop(self) -> None:
        """Cancel every task (last declared first) and wait for them to finish."""
        self._stopping = True
        for name in reversed(list(self._running)):
            task = self._running.pop(name, None)
            if task is None:  # a one-off task that finished meanwhile
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            self.tasks[name].state = TaskState.STOPPED
        if self.app is not None:
            checks = self.app.state.readiness_checks
            for check in self._checks.values():
                with contextlib.suppress(ValueError):
                    checks.remove(check)
        self._checks.clear()

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ internals

    def _add(self, status: TaskStatus, body: Callable[[TaskStatus], Awaitable[None]]) -> None:
        if status.name in self.tasks:
            raise ValueError(f"task {status.name!r} is declared twice")
        self.tasks[status.name] = status
        TASK_UP.labels(self.service, status.name).set_function(lambda: float(status.healthy))
        # Count from zero so a scrape shows the series before the first restart.
        TASK_RESTARTS_TOTAL.labels(self.service, status.name).inc(0)
        if status.critical and self.app is not None:
            check = self._readiness_check(status)
            self._checks[status.name] = check
            self.app.state.readiness_checks.append(check)
        self._running[status.name] = asyncio.create_task(
            self._supervise(status, body), name=f"{self.service}:{status.name}"
        )

    @staticmethod
    def _readiness_check(status: TaskStatus) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return status.healthy

        check.__name__ = f"task:{status.name}"
        return check

    async def _supervise(
        self, status: TaskStatus, body: Callable[[TaskStatus], Awaitable[None]]
    ) -> None:
        failures = 0
        while not self._stopping:
            status.state = TaskState.RUNNING
            started = time.monotonic()
            try:
                await body(status)
                if status.once:
                    self._forget(status)
                    return
                error: BaseException = RuntimeError("the task returned")
            except asyncio.CancelledError as e:
                # Our own cancellation (stop) ends supervision; a CancelledError the
                # task raised on its own (a cancelled inner task) is a crash.
                current = asyncio.current_task()
                if self._stopping or current is None or current.cancelling():
                    raise
                error = e
            except Exception as e:
                error = e
            if self._stopping:
                return
            # A task that ran for a while before crashing starts its backoff afresh.
            failures = 1 if time.monotonic() - started >= self.stable_after_s else failures + 1
            delay = self.backoff.delay(failures) or self.backoff.longest_step
            status.state = TaskState.RESTARTING
            status.restarts += 1
            status.last_error = f"{type(error).__name__}: {error}"[:500]
            TASK_RESTARTS_TOTAL.labels(self.service, status.name).inc()
            log.error(
                "%s task %s crashed (%s); restart %d in %.1fs",
                self.service,
                status.name,
                status.last_error,
                status.restarts,
                delay,
                exc_info=error,
            )
            await asyncio.sleep(delay)

    def _forget(self, status: TaskStatus) -> None:
        """Drop a one-off task that finished: its status, readiness check and series."""
        status.state = TaskState.STOPPED
        self.tasks.pop(status.name, None)
        self._running.pop(status.name, None)
        check = self._checks.pop(status.name, None)
        if check is not None and self.app is not None:
            with contextlib.suppress(ValueError):
                self.app.state.readiness_checks.remove(check)
        for metric in (TASK_UP, TASK_RESTARTS_TOTAL):
            with contextlib.suppress(KeyError):
                metric.remove(self.service, status.name)

    @staticmethod
    async def _forever(status: TaskStatus, run: Job) -> None:
        await run()

    async def _periodic(
        self, status: TaskStatus, interval: float, job: Job, run_at_start: bool
    ) -> None:
        # After a crash the job is retried once its restart delay is over.
        if not run_at_start and status.restarts == 0:
            await asyncio.sleep(interval)
        while True:
            await job()
            await asyncio.sleep(interval)
