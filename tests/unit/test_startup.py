"""``create_app``'s lifespan survives a dependency that is down at start (http.startup).

A real server on 127.0.0.1; the "dependency" is a lifespan that raises the errors a
driver raises (connection refused) until it is let through.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from clearway.shared.crypto.keys import KeyUnavailable
from clearway.shared.http import PROBLEM_MEDIA_TYPE, create_app
from clearway.shared.http.startup import dependency_name
from clearway.shared.testing.helpers import eventually, serve


def flaky_app(failures: int, error: type[Exception] = ConnectionRefusedError) -> FastAPI:
    """An app whose start fails ``failures`` times, and after that until ``state["up"]``."""
    state = {"attempts": 0, "open": False, "closed": False, "up": failures == 0}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["attempts"] += 1
        app.state.readiness_checks.append(_half_registered)  # undone after a failure
        if state["attempts"] <= failures or not state["up"]:
            raise error("connect call failed")
        state["open"] = True
        try:
            yield
        finally:
            state["closed"] = True

    app = create_app("startup-test", title="starting", lifespan=lifespan)
    app.state.flaky = state

    @app.get("/v1/thing")
    async def thing() -> dict[str, bool]:
        return {"open": state["open"]}

    return app


async def _half_registered() -> bool:
    return True


async def _attempts(app: FastAPI, n: int) -> bool:
    return bool(app.state.flaky["attempts"] >= n)


async def test_a_start_that_cannot_reach_a_dependency_serves_503s_then_heals() -> None:
    app = flaky_app(failures=2)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).status_code == 200
        await eventually(lambda: _attempts(app, 2), timeout=20)  # retried in the background
        r = await http.get("/v1/thing")
        assert r.status_code == 503
        assert r.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
        assert int(r.headers["retry-after"]) > 0
        assert r.json()["type"].endswith("/service-unavailable")
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failed_checks"] == ["startup:dependency"]
        assert (await http.get("/metrics")).status_code == 200

        app.state.flaky["up"] = True

        async def serving() -> bool:
            return (await http.get("/v1/thing")).status_code == 200

        await eventually(serving, timeout=20)
        assert (await http.get("/readyz")).status_code == 200
        assert app.state.flaky["attempts"] >= 3
        assert app.state.readiness_checks == [_half_registered]
    assert app.state.flaky["closed"], "the lifespan entered in the background is exited"


async def test_a_start_that_fails_for_another_reason_still_fails_the_process() -> None:
    app = flaky_app(failures=1, error=ValueError)
    # the lifespan as the server runs it (uvicorn then exits: "startup failed")
    with pytest.raises(ValueError, match="connect call failed"):
        async with app.router.lifespan_context(app):
            pass
    assert app.state.flaky["attempts"] == 1


async def test_a_healthy_start_is_unchanged() -> None:
    app = flaky_app(failures=0)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/v1/thing")).json() == {"open": True}
        assert (await http.get("/readyz")).status_code == 200
    assert app.state.flaky["attempts"] == 1


def test_the_dependency_is_named_by_the_error_or_the_library_that_raised_it() -> None:
    assert dependency_name(KeyUnavailable("HSM token unavailable")) == "hsm"
    assert dependency_name(asyncpg.exceptions.CannotConnectNowError("starting")) == "database"
    assert dependency_name(ConnectionRefusedError("refused")) == "dependency"
