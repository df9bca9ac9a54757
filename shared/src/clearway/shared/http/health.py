"""Liveness and readiness probes (``/healthz``, ``/readyz``).

Liveness only says the process answers; readiness runs the checks a service
registers on ``app.state.readiness_checks`` (database reachable, broker
connected...) so an orchestrator stops routing to a replica that cannot serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request

from clearway.shared.http.problems import ProblemError

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
# Probes give up after a second or two; a hung check must fail, not hang the probe.
READINESS_TIMEOUT_SECONDS = 2.0

ReadinessCheck = Callable[[], Awaitable[bool]]

logger = logging.getLogger(__name__)


def health_router(service: str) -> APIRouter:
    """``GET /healthz`` (always 200) and ``GET /readyz`` (200, or a 503 problem naming
    the failed checks)."""
    router = APIRouter(include_in_schema=False)

    @router.get(HEALTH_PATH)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get(READY_PATH)
    async def readyz(request: Request) -> dict[str, str]:
        checks: list[ReadinessCheck] = list(getattr(request.app.state, "readiness_checks", []))
        results = await asyncio.gather(*(_passes(check) for check in checks))
        failed = [_name(check) for check, ok in zip(checks, results, strict=True) if not ok]
        if failed:
            raise ProblemError(
                503,
                "not-ready",
                "Service not ready",
                f"Readiness checks failed: {', '.join(failed)}.",
                failed_checks=failed,
            )
        return {"status": "ready", "service": service}

    return router


async def _passes(check: ReadinessCheck) -> bool:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            return bool(await check())
    except Exception:  # a check that raises or times out is a failed check
        logger.warning("readiness check %s failed", _name(check), exc_info=True)
        return False


def _name(check: ReadinessCheck) -> str:
    return str(getattr(check, "__name__", None) or type(check).__name__)
