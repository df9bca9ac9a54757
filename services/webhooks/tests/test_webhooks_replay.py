"""Replay jobs over the CLI: progress, dry run, resumable, and safe to run twice."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvicorn

from clearway.webhooks.bootstrap import build_app

pytestmark = pytest.mark.integration


async def cli(url: str, token: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clearway.webhooks.cli",
        "--url",
        url,
        "--token",
        token,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode() + err.decode()


async def test_a_replay_by_cli_delivers_the_dead_letters_and_running_it_again_sends_nothing_twice(
    settings, token, receiver_factory, publish, make_event, eventually
):
    from clearway.shared.kafka import ensure_topics

    await ensure_topics(settings.platform.kafka, [settings.topic("clearway.platform.events.v1")])
    app = build_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        broken = {"on": True}
        receiver = await receiver_factory(
            lambda req, n: (500, {}, b"") if broken["on"] else (204, {}, b"")
        )
        import httpx

        auth = {"Authorization": f"Bearer {token()}"}
        async with httpx.AsyncClient(base_url=url, headers=auth) as http:
            endpoint = (
                await http.post(
                    "/v1/endpoints", json={"url": receiver.url, "event_types": ["platform.*"]}
                )
            ).json()
            await publish([make_event(i, run="replay") for i in range(3)])

            async def failed() -> bool:
                r = await http.get("/v1/messages", params={"status": "failed"})
                return len(r.json()["data"]) == 3

            await eventually(failed)
            broken["on"] = False
            window = ["--since", "2000-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z"]

            dry = await cli(
                url, token(), "replay", "--endpoint", endpoint["id"], *window, "--dry-run"
            )
            assert "would re-queue 3 of 3" in dry
            await asyncio.sleep(0.5)
            assert all(r.headers.get("webhook-id") for r in receiver.requests)
            before = len(receiver.requests)
            assert before == 15, "a dry run sends nothing"

            out = await cli(
                url, token(), "replay", "--endpoint", endpoint["id"], *window, "--status", "failed"
            )
            assert "re-queued 3 of 3" in out and "100%" in out, "a progress bar ran to the end"
            job_id = out.split(":")[0].strip().splitlines()[-1]
            await eventually(lambda: len(receiver.requests) >= before + 3)

            again = await cli(url, token(), "rerun", job_id)
            assert "re-queued 0" in again, "nothing is failed any more"

            # 'all' re-sends delivered messages once; its second run finds them delivered
            # after the job started and leaves them alone
            out = await cli(
                url, token(), "replay", "--endpoint", endpoint["id"], *window, "--status", "all"
            )
            assert "re-queued 3 of 3" in out
            job_id = out.split(":")[0].strip().splitlines()[-1]
            await eventually(lambda: len(receiver.requests) >= before + 6)

            async def delivered_again() -> bool:
                r = await http.get("/v1/messages", params={"status": "delivered"})
                return len(r.json()["data"]) == 3

            await eventually(delivered_again)
            again = await cli(url, token(), "rerun", job_id)
            assert "re-queued 0 of 3" in again and "skipped 3" in again
            await asyncio.sleep(1.0)
            assert len(receiver.requests) == before + 6, "nothing was sent twice"
            job = (await http.get(f"/v1/replays/{job_id}")).json()
            assert job["runs"] == 2 and job["state"] == "done"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_a_replay_job_is_a_supervised_task_restarted_with_backoff_after_a_crash(
    service, receiver_factory, publish, make_event, eventually, platform
):
    import asyncpg

    from clearway.shared.backoff import Backoff
    from clearway.shared.supervisor import TaskState

    receiver = await receiver_factory()
    endpoint = await service.create_endpoint(receiver.url)
    await publish([make_event(1, run="supervised")])
    await eventually(lambda: len(receiver.requests) == 1)

    async def recorded() -> bool:  # nothing else touches the message from now on
        r = await service.http.get("/v1/messages", headers=service.auth)
        return [m["status"] for m in r.json()["data"]] == ["delivered"]

    await eventually(recorded)
    sup = service.app.state.supervisor
    sup.backoff = Backoff(base=1.0, cap=1.0, jitter=0.0)  # long enough to observe
    admin = await asyncpg.connect(platform.database_url)
    try:
        # hold the message the job must lock, so its step waits where we can break it
        holder = admin.transaction()
        await holder.start()
        await admin.execute("SELECT 1 FROM webhooks.messages FOR UPDATE")
        r = await service.http.post(
            "/v1/replays",
            json={
                "endpoint_id": endpoint["id"],
                "since": "2000-01-01T00:00:00Z",
                "until": "2100-01-01T00:00:00Z",
                "status": "all",
            },
            headers=service.auth,
        )
        assert r.status_code == 202, r.text
        name = f"replay-{r.json()['id']}"
        assert name in sup.status(), "the job runs as a task of the supervisor"

        found: list[int] = []

        async def waiting_step() -> bool:
            # This connection is inside the holder's transaction, where Postgres keeps
            # the first read of pg_stat_activity for the whole transaction: without a
            # fresh snapshot, a first poll made before the step waited sees it never.
            await admin.execute("SELECT pg_stat_clear_snapshot()")
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database() AND query LIKE '%FOR UPDATE%'"
            )
            found[:] = [pid] if pid else []
            return bool(pid)

        await eventually(waiting_step, timeout=60)  # the job's step waits for the message
        pid = found[0]
        await admin.execute("SELECT pg_terminate_backend($1)", pid)  # the database fails it

        def restarting() -> bool:
            s = sup.status().get(name)
            return s is not None and s.state is TaskState.RESTARTING

        await eventually(restarting, timeout=10)
        ready = await service.http.get("/readyz")
        assert ready.status_code == 503 and f"task:{name}" in ready.json()["failed_checks"]
        await holder.rollback()
        # restarted from its stored cursor, the job finishes and its task goes away
        await eventually(lambda: name not in sup.status(), timeout=30)
        assert sup.status().get(name) is None
        await eventually(lambda: len(receiver.requests) == 2, timeout=30)
        job = await service.http.get(f"/v1/replays/{r.json()['id']}", headers=service.auth)
        assert job.json()["state"] == "done" and job.json()["queued"] == 1
        assert (await service.http.get("/readyz")).status_code == 200
    finally:
        await admin.close()
