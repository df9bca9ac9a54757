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
