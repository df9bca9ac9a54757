"""Small helpers every test suite needs: free ports, real local servers, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, TypeVar

import uvicorn

from clearway.shared.settings import PlatformSettings

T = TypeVar("T")


def kafka_env(platform: PlatformSettings) -> dict[str, str]:
    """The variables a service process needs to reach this test's broker as its own
    principal: bootstrap, security protocol and every login of the stack
    (``CLEARWAY_<NAME>_KAFKA_USERNAME/_PASSWORD``)."""
    env = {
        "CLEARWAY_KAFKA_BOOTSTRAP": platform.kafka_bootstrap,
        "CLEARWAY_KAFKA_SECURITY_PROTOCOL": platform.kafka_security_protocol,
    }
    for name, login in platform.kafka_logins.items():
        env[f"CLEARWAY_{name.upper()}_KAFKA_USERNAME"] = login.username
        env[f"CLEARWAY_{name.upper()}_KAFKA_PASSWORD"] = login.password
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(
    probe: Callable[[], Awaitable[T]],
    timeout: float = 90.0,  # noqa: ASYNC109 - a polling bound, not a cancel scope
    interval: float = 0.1,
) -> T:
    """Wait until ``probe()`` returns something truthy and return it.

    Tests never assert on timing: the machine is shared and noisy, so waits are
    generous and fail with the elapsed bound rather than a race.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await probe()
        if result:
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@contextlib.asynccontextmanager
async def serve(
    app: Any,
    port: int | None = None,
    *,
    lifespan: Literal["auto", "on", "off"] = "on",
    host: str = "127.0.0.1",
) -> AsyncIterator[str]:
    """Run an ASGI ``app`` with uvicorn on ``host`` (a real server) inside this loop."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan=lifespan,
            timeout_graceful_shutdown=20,
        )
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 90
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 60)
        except TimeoutError:
            # The test itself is over; a shutdown that outlasts a minute on a loaded host
            # is reported (the CI output names it), not turned into the test's failure.
            warnings.warn(f"{app!r} did not shut down within 60 s; cancelled", stacklevel=1)


def pg_dump_data(dsn: str) -> str:
    """The data of every schema of database ``dsn`` as ``pg_dump --data-only`` text, so a
    test can show what a database holds (and what it must not)."""
    import shutil
    import subprocess
    from pathlib import Path

    found = shutil.which("pg_dump") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))), None
    )
    assert found, "pg_dump not found"
    return subprocess.run(
        [str(found), "--no-owner", "--data-only", dsn], capture_output=True, text=True, check=True
    ).stdout
