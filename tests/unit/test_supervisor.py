"""Supervised background work: crashed tasks restart with backoff, are counted in
``/metrics`` and, when critical, make ``/readyz`` fail naming them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from clearway.shared.backoff import Backoff
from clearway.shared.http import create_app
from clearway.shared.supervisor import Supervisor, TaskState
from clearway.shared.testing.helpers import eventually, serve

FAST = Backoff(base=0.05, cap=0.2, jitter=0.0)


def metric(text: str, name: str, service: str, task: str) -> float | None:
    prefix = f'{name}{{service="{service}",task="{task}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def app_with(declare, service: str) -> FastAPI:  # type: ignore[no-untyped-def]
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Supervisor(service, app, backoff=FAST) as tasks:
            declare(tasks)
            yield

    return create_app(service, title="supervised", lifespan=lifespan)


async def test_a_crashing_periodic_job_is_restarted_and_the_restart_is_reported(
    caplog: pytest.LogCaptureFixture,
):
    runs: list[int] = []

    async def job() -> None:
        runs.append(1)
        if len(runs) in (2, 3):
            raise RuntimeError("the sweep broke")
        if len(runs) == 4:
            raise asyncio.CancelledError()  # an inner task was cancelled under it

    service = "supervise-periodic"
    app = app_with(lambda t: t.every("sweep", 0.05, job, run_at_start=True), service)
    with caplog.at_level(logging.ERROR, logger="clearway.shared.supervisor"):
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:

            async def restarted_three_times() -> bool:
                m = metric(
                    (await http.get("/metrics")).text,
                    "clearway_task_restarts_total",
                    service,
                    "sweep",
                )
                return m == 3.0 and len(runs) >= 6

            await eventually(restarted_three_times, timeout=30)
            status = app.state.supervisor.status()["sweep"]
            assert status.restarts == 3 and status.state is TaskState.RUNNING
            text = (await http.get("/metrics")).text
            assert metric(text, "clearway_task_up", service, "sweep") == 1.0
            # a periodic job is not critical: the service stays ready
            assert (await http.get("/readyz")).status_code == 200
    crashes = [r for r in caplog.records if "task sweep crashed" in r.getMessage()]
    assert len(crashes) == 3 and all(r.levelno == logging.ERROR for r in crashes)


async def test_a_dead_or_unhealthy_critical_task_makes_the_service_not_ready():
    healthy = True
    crash = asyncio.Event()

    async def relay() -> None:
        await crash.wait()
        crash.clear()
        raise ConnectionError("broker gone")

    service = "supervise-critical"
    app = app_with(lambda t: t.task("relay", relay, health=lambda: healthy), service)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/readyz")).status_code == 200
        healthy = False
        r = await http.get("/readyz")
        assert r.status_code == 503 and r.json()["failed_checks"] == ["task:relay"]
        text = (await http.get("/metrics")).text
        assert metric(text, "clearway_task_up", service, "relay") == 0.0
        healthy = True
        sup: Supervisor = app.state.supervisor
        sup.backoff = Backoff(base=1.0, cap=1.0, jitter=0.0)  # long enough to observe
        crash.set()
        await eventually(lambda: _is(sup, TaskState.RESTARTING), timeout=10, interval=0.01)
        r = await http.get("/readyz")
        assert r.status_code == 503 and r.json()["failed_checks"] == ["task:relay"]

        async def ready_again() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await eventually(ready_again, timeout=10)
        text = (await http.get("/metrics")).text
        assert metric(text, "clearway_task_restarts_total", service, "relay") == 1.0
    assert app.state.supervisor.status()["relay"].state is TaskState.STOPPED


async def _is(sup: Supervisor, state: TaskState) -> bool:
    return sup.status()["relay"].state is state


async def test_a_task_is_declared_once():
    async with Supervisor("supervise-once") as tasks:
        tasks.every("job", 10, _noop)
        with pytest.raises(ValueError):
            tasks.every("job", 10, _noop)


async def _noop() -> None:
    return None


async def test_a_one_off_task_restarts_after_a_crash_shows_in_readiness_then_goes_away():
    gate = asyncio.Event()
    runs: list[int] = []

    async def job() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise ConnectionError("database gone")
        await gate.wait()

    service = "supervise-one-off"
    app = app_with(lambda t: None, service)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        sup: Supervisor = app.state.supervisor
        sup.backoff = Backoff(base=0.5, cap=0.5, jitter=0.0)
        assert sup.once("replay-1", job)
        assert not sup.once("replay-1", job), "one task per name while it exists"
        await eventually(lambda: _state(sup, "replay-1", TaskState.RESTARTING), timeout=10)
        r = await http.get("/readyz")
        assert r.status_code == 503 and r.json()["failed_checks"] == ["task:replay-1"]
        await eventually(lambda: _true(len(runs) == 2), timeout=10)
        assert (await http.get("/readyz")).status_code == 200
        assert sup.status()["replay-1"].restarts == 1
        gate.set()  # the job finishes: the task is forgotten
        await eventually(lambda: _true("replay-1" not in sup.status()), timeout=10)
        text = (await http.get("/metrics")).text
        assert metric(text, "clearway_task_up", service, "replay-1") is None
        assert (await http.get("/readyz")).status_code == 200
        assert sup.once("replay-1", job), "the name is free again"
        await eventually(lambda: _true("replay-1" not in sup.status()), timeout=10)


async def test_a_one_off_start_with_health_is_not_ready_during_its_first_attempt():
    """A service's Kafka start (``KafkaStart``) is such a task: until it is done the
    service has no topics, so its first attempt must not pass for ready."""
    gate = asyncio.Event()
    done = False

    async def start() -> None:
        nonlocal done
        await gate.wait()
        done = True

    app = app_with(lambda t: t.once("kafka", start, health=lambda: done), "supervise-start")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        sup: Supervisor = app.state.supervisor
        await eventually(lambda: _state(sup, "kafka", TaskState.RUNNING), timeout=10)
        r = await http.get("/readyz")
        assert r.status_code == 503 and r.json()["failed_checks"] == ["task:kafka"]
        gate.set()
        await eventually(lambda: _true("kafka" not in sup.status()), timeout=10)
        assert (await http.get("/readyz")).status_code == 200


async def _state(sup: Supervisor, name: str, state: TaskState) -> bool:
    status = sup.status().get(name)
    return status is not None and status.state is state


async def _true(value: bool) -> bool:
    return value
