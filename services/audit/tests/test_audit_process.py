"""``python -m clearway.audit`` starts the service on its port and answers probes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest

from clearway.shared.testing.helpers import eventually, free_port, kafka_env

pytestmark = pytest.mark.integration


async def test_the_service_runs_as_a_process_and_answers_healthz(platform, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "CLEARWAY_DATABASE_URL": platform.database_url,
        **kafka_env(platform),
        "CLEARWAY_TOPIC_PREFIX": platform.topic_prefix,
        "CLEARWAY_AUDIT_PORT": str(port),
        "CLEARWAY_AUDIT_KEY_PROVIDER": "keyring",
        "CLEARWAY_AUDIT_KEYRING_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "clearway.audit"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        async def healthy() -> bool:
            assert proc.poll() is None, "the service exited"
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(base + "/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(healthy, timeout=90, interval=0.5)
        async with httpx.AsyncClient(base_url=base) as c:

            async def ready() -> bool:  # once the revocation feed has caught up
                return (await c.get("/readyz")).status_code == 200

            await eventually(ready, timeout=60, interval=0.2)
            keys = (await c.get("/v1/audit/keys")).json()["keys"]
            assert len(keys) == 1 and "d" not in keys[0]
            assert (await c.get("/v1/audit/records")).status_code == 401
        assert (tmp_path / "audit-checkpoint.sig.json").stat().st_mode & 0o077 == 0
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
