"""Revocation → refusal by the other services, against raw Kafka on the same broker.

Prints, for the same run:
- ``--target every`` (default): a client calling **every** service is disabled (the
  tenant admin's ``POST /v1/admin/clients/{id}/disable``); per trial, the time from
  that response to the first 401 at transfer, webhooks, audit and consent (each
  polled in its own loop with the client's token), and the time until all four
  refuse it. 100 trials, a fresh client each (goal p99 ≤ 200 ms, limit ≤ 1 s);
- ``--target transfer`` / ``kit``: consent revocation (``DELETE /v1/consents/{id}``)
  to the first 401 at the real transfer service or a bare kit-built service;
- the baseline: raw aiokafka produce (idempotent, acks=all) → consume latency of one
  record on the same broker, 100 times;
- the ratio of the two.

    uv run python -m benchmarks.bench_consent [--trials 100] [--target every]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import socket
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, Security

from benchmarks.common import cdf, emit, fresh_database, pct, stack, summary
from clearway.consent import clients, handlers
from clearway.consent.bootstrap import build_app
from clearway.consent.settings import ConsentSettings
from clearway.shared.auth import (
    HttpJwksSource,
    Principal,
    RevocationFeed,
    RevocationSet,
    TokenVerifier,
    require_scope,
)
from clearway.shared.http import create_app
from clearway.shared.kafka import ensure_topics
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.relay import idempotent_producer
from clearway.shared.settings import PlatformSettings

REDIRECT = "http://127.0.0.1:8765/callback"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serve(app: FastAPI, port: int):
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(1800):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def resource_app(issuer: str, bootstrap: str, topic: str) -> tuple[FastAPI, RevocationFeed]:
    """What the transfer service wires: the kit's verifier and revocation feed."""
    revocations = RevocationSet()
    feed = RevocationFeed(KafkaLink(bootstrap), topic, revocations)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await feed.start()
        yield
        await feed.stop()

    app = create_app("bench-resource", title="kit-protected", lifespan=lifespan)
    app.state.token_verifier = TokenVerifier(
        issuer=issuer,
        audience="clearway-transfer",
        jwks_source=HttpJwksSource.for_issuer(issuer),
        revocations=revocations,
    )

    @app.get("/v1/transfers")
    async def transfers(p: Principal = Security(require_scope("payments:read"))) -> dict:
        return {"consent_id": p.consent_id}

    return app, feed


async def bound_token(http, url, app, partner, writer) -> tuple[str, str]:
    created = await http.post(
        f"{url}/v1/consents",
        json={
            "purpose": "benchmark payment",
            "subject": "usr_alice",
            "scopes": ["payments:initiate", "payments:read"],
            "authorization_details": [
                {
                    "type": "payment_initiation",
                    "instructedAmount": {"amount": 1000, "currency": "EUR"},
                    "creditorName": "Merchant",
                    "creditorAccount": {"iban": "DE02100100109307118603"},
                }
            ],
        },
        headers={"Authorization": f"Bearer {writer}"},
    )
    consent = created.json()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    par = {
        "client_id": partner["client_id"],
        "redirect_uri": REDIRECT,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "scopes": ["payments:initiate", "payments:read"],
        "resource": [],
        "consent_id": consent["id"],
    }
    # The user's approval (the consent page's handler; the browser test walks the page).
    code = await handlers.decide(
        app.state.consent, par, "usr_alice", consent["tenant"], True, "bench"
    )
    token = await http.post(
        f"{url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(partner["client_id"], partner["client_secret"]),
    )
    return consent["id"], token.json()["access_token"]


async def propagation(
    http, consent_url, resource_url, app, partner, trials, path="/v1/transfers"
) -> list[float]:
    async def token(scope: str) -> str:
        r = await http.post(
            f"{consent_url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(partner["client_id"], partner["client_secret"]),
        )
        return r.json()["access_token"]

    writer, revoker = await token("consents:write"), await token("consents:revoke")
    bound = [await bound_token(http, consent_url, app, partner, writer) for _ in range(trials)]
    delays = []
    for consent_id, tok in bound:
        headers = {"Authorization": f"Bearer {tok}"}
        assert (await http.get(f"{resource_url}{path}", headers=headers)).status_code == 200
        r = await http.delete(
            f"{consent_url}/v1/consents/{consent_id}",
            headers={"Authorization": f"Bearer {revoker}"},
        )
        assert r.status_code == 200, r.text
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 30:
            if (await http.get(f"{resource_url}{path}", headers=headers)).status_code == 401:
                break
        else:
            raise AssertionError("revoked consent still accepted after 30 s")
        delays.append(time.perf_counter() - t0)
    return delays


#: service → (route read with the client's token, the scope it needs)
EVERY = {
    "transfer": ("/v1/transfers?reference=CW0", "payments:read"),
    "webhooks": ("/v1/endpoints", "webhooks:read"),
    "audit": ("/v1/audit/records", "audit:read"),
    "consent": ("/v1/consents", "consents:read"),
}


def every_service(platform: PlatformSettings, local: Path) -> dict[str, FastAPI]:
    """transfer, webhooks and audit as their own bootstraps wire them (executor,
    consumers and dispatcher off: only token checks are measured)."""
    from clearway.audit.bootstrap import build_app as audit_app
    from clearway.audit.settings import AuditSettings
    from clearway.transfer.bootstrap import build_app as transfer_app
    from clearway.transfer.settings import TransferSettings
    from clearway.webhooks.bootstrap import build_app as webhooks_app
    from clearway.webhooks.settings import WebhooksSettings

    return {
        "transfer": transfer_app(
            TransferSettings(platform=platform, run_executor=False, rail_url="http://127.0.0.1:9")
        ),
        "webhooks": webhooks_app(
            WebhooksSettings(platform=platform, run_dispatcher=False, run_consumer=False)
        ),
        "audit": audit_app(
            AuditSettings(
                platform=platform, key_provider="keyring", keyring_dir=local, consume=False
            )
        ),
    }


async def disable_propagation(
    http, urls: dict[str, str], app, admin, trials: int
) -> tuple[list[float], dict[str, list[float]]]:
    """Per trial: (time until every service refuses, time to each service's first 401)."""
    r = await http.post(
        f"{urls['consent']}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "admin:clients"},
        auth=(admin["client_id"], admin["client_secret"]),
    )
    admin_headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    scopes = " ".join(sorted(scope for _, scope in EVERY.values()))
    alls: list[float] = []
    each: dict[str, list[float]] = {name: [] for name in EVERY}
    for i in range(trials):
        client_id = f"{admin['tenant']}-bench-{i}-{uuid.uuid4().hex[:6]}"
        secret = await clients.register_client(
            app.state.consent,
            client_id=client_id,
            tenant=admin["tenant"],
            name="bench client",
            scopes=scopes.split(),
        )
        r = await http.post(
            f"{urls['consent']}/oauth/token",
            data={"grant_type": "client_credentials", "scope": scopes},
            auth=(client_id, secret),
        )
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        for name, (path, _) in EVERY.items():
            status = (await http.get(f"{urls[name]}{path}", headers=headers)).status_code
            assert status == 200, (name, status)
        r = await http.post(
            f"{urls['consent']}/v1/admin/clients/{client_id}/disable",
            json={"reason": "benchmark"},
            headers=admin_headers,
        )
        assert r.status_code == 200, r.text
        t0 = time.perf_counter()

        async def refused(name: str, path: str) -> float:
            while time.perf_counter() - t0 < 30:
                if (await http.get(f"{urls[name]}{path}", headers=headers)).status_code == 401:
                    return time.perf_counter() - t0
            raise AssertionError(f"disabled client still accepted by {name} after 30 s")

        delays = await asyncio.gather(*(refused(n, p) for n, (p, _) in EVERY.items()))
        for name, delay in zip(EVERY, delays, strict=True):
            each[name].append(delay)
        alls.append(max(delays))
    return alls, each


async def raw_kafka(bootstrap: str, trials: int) -> list[float]:
    """One record at a time: idempotent acks=all producer → group-less consumer."""
    topic = f"bench-consent-raw-{uuid.uuid4().hex[:8]}"
    await ensure_topics(KafkaLink(bootstrap), [topic])
    producer = idempotent_producer(KafkaLink(bootstrap))
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        delays = []
        for i in range(trials):
            t0 = time.perf_counter()
            await producer.send_and_wait(topic, json.dumps({"i": i}).encode(), key=b"k")
            got = False
            while not got:
                batch = await consumer.getmany(timeout_ms=100)
                got = any(json.loads(r.value)["i"] == i for rs in batch.values() for r in rs)
            delays.append(time.perf_counter() - t0)
        return delays
    finally:
        await consumer.stop()
        await producer.stop()


async def main_every(trials: int) -> None:
    with stack() as (admin_url, kafka), tempfile.TemporaryDirectory() as local:
        db = await fresh_database(admin_url)
        port = free_port()
        platform = PlatformSettings(
            database_url=db,
            kafka_bootstrap=kafka,
            topic_prefix=f"b{uuid.uuid4().hex[:6]}.",
            oauth_issuer=f"http://127.0.0.1:{port}",
            local_dir=Path(local),
        )
        # cheap client-secret hashes: registering 100 clients is set-up, not measured
        settings = ConsentSettings(
            platform=platform, port=port, seed_demo=True, argon2_time_cost=1, argon2_memory_kib=1024
        )
        app = build_app(settings)
        async with contextlib.AsyncExitStack() as stack_:
            urls = {"consent": await stack_.enter_async_context(serve(app, port))}
            for name, resource in every_service(platform, Path(local)).items():
                urls[name] = await stack_.enter_async_context(serve(resource, free_port()))
            http = await stack_.enter_async_context(httpx.AsyncClient(timeout=30))
            for url in urls.values():  # /readyz: every revocation feed has caught up
                while (await http.get(f"{url}/readyz")).status_code != 200:
                    await asyncio.sleep(0.1)
            admin = next(
                c
                for c in json.loads((Path(local) / "dev-clients.json").read_text())
                if c["client_id"] == "tnt_demo_alpha-admin"
            )
            alls, each = await disable_propagation(http, urls, app, admin, trials)
        baseline = await raw_kafka(kafka, trials)
    print(
        "\n== client disabled → first 401 at every service (transfer, webhooks, audit, consent) =="
    )
    for name, delays in each.items():
        print(f"{name:9} {summary(delays)}")
    print(f"all four  {summary(alls)}")
    print(f"baseline  raw aiokafka produce→consume (1 record, same broker)  {summary(baseline)}")
    print(
        f"ratio     p50 {pct(alls, 50) / pct(baseline, 50):.1f}x"
        f"   p99 {pct(alls, 99) / pct(baseline, 99):.1f}x"
    )
    p99 = pct(alls, 99)
    verdict = "goal met" if p99 <= 0.2 else ("within limit" if p99 <= 1.0 else "OVER LIMIT")
    print(f"p99 {p99 * 1000:.0f} ms: {verdict} (goal ≤ 200 ms, limit ≤ 1 s)")
    figures = {f"{name}_p99_ms": pct(delays, 99) * 1000 for name, delays in each.items()}
    emit(
        "consent",
        figures
        | {
            "all_p50_ms": pct(alls, 50) * 1000,
            "all_p99_ms": p99 * 1000,
            "raw_p50_ms": pct(baseline, 50) * 1000,
            "raw_p99_ms": pct(baseline, 99) * 1000,
        },
        cdfs={"disabled → 401 at all four": cdf(alls), "raw aiokafka": cdf(baseline)},
    )


async def main(trials: int, target: str = "kit") -> None:
    with stack() as (admin, kafka), tempfile.TemporaryDirectory() as local:
        db = await fresh_database(admin)
        port = free_port()
        settings = ConsentSettings(
            platform=PlatformSettings(
                database_url=db,
                kafka_bootstrap=kafka,
                topic_prefix=f"b{uuid.uuid4().hex[:6]}.",
                oauth_issuer=f"http://127.0.0.1:{port}",
                local_dir=Path(local),
            ),
            port=port,
            seed_demo=True,
        )
        app = build_app(settings)
        async with serve(app, port) as consent_url:
            partner = next(
                c
                for c in json.loads((Path(local) / "dev-clients.json").read_text())
                if c["client_id"] == "tnt_demo_alpha-partner"
            )
            path = "/v1/transfers"
            if target == "transfer":
                # The real transfer service, wired by its own bootstrap (executor
                # off: no transfer is created here, only reads are refused).
                from clearway.transfer.bootstrap import build_app as transfer_app
                from clearway.transfer.settings import TransferSettings

                resource = transfer_app(
                    TransferSettings(
                        platform=settings.platform,
                        rail_url="http://127.0.0.1:9",
                        run_executor=False,
                    )
                )
                path = "/v1/transfers?reference=CW0"
            else:
                resource, _ = resource_app(settings.issuer, kafka, settings.topic)
            async with (
                serve(resource, free_port()) as resource_url,
                httpx.AsyncClient(timeout=30) as http,
            ):
                await asyncio.sleep(2)  # the revocation feed catches up at start
                platform = await propagation(
                    http, consent_url, resource_url, app, partner, trials, path
                )
        baseline = await raw_kafka(kafka, trials)
    print(f"\n== consent revocation → first 401 at the {target} service ==")
    print(f"platform  {summary(platform)}")
    print(f"baseline  raw aiokafka produce→consume (1 record, same broker)  {summary(baseline)}")
    print(
        f"ratio     p50 {pct(platform, 50) / pct(baseline, 50):.1f}x"
        f"   p99 {pct(platform, 99) / pct(baseline, 99):.1f}x"
    )
    verdict = (
        "goal met"
        if pct(platform, 99) <= 0.2
        else ("within limit" if pct(platform, 99) <= 1.0 else "OVER LIMIT")
    )
    print(f"p99 {pct(platform, 99) * 1000:.0f} ms: {verdict} (goal ≤ 200 ms, limit ≤ 1 s)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument(
        "--target",
        choices=["every", "kit", "transfer"],
        default="every",
        help="every: a disabled client refused by transfer, webhooks, audit and consent; "
        "transfer/kit: a revoked consent refused by the real transfer service or a bare kit app",
    )
    a = ap.parse_args()
    asyncio.run(main_every(a.trials) if a.target == "every" else main(a.trials, a.target))
