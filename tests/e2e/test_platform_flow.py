"""End to end: every service as its own process on one stack, one correlation id.

A partner's consent, a transfer executed against the sandbox rail, the signed
webhook a partner receives, and the audit trail that shows the whole flow,
searched by the correlation id the partner sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from clearway_webhook_verify import Verifier

from clearway.shared.testing.helpers import eventually, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICES = ["consent", "rail", "transfer", "webhooks", "audit"]


class Platform:
    """The five services started with ``python -m clearway.<svc>``, as ``make run`` does."""

    def __init__(self, settings, local: Path) -> None:
        self.ports = {svc: free_port() for svc in SERVICES}
        self.local = local
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {
            **os.environ,
            "CLEARWAY_DATABASE_URL": settings.database_url,
            "CLEARWAY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "CLEARWAY_TOPIC_PREFIX": settings.topic_prefix,
            "CLEARWAY_OAUTH_ISSUER": self.url("consent"),
            "CLEARWAY_LOCAL_DIR": str(local),
            "CLEARWAY_CONSENT_SEED_DEMO": "1",
            "CLEARWAY_CONSENT_ARGON2_TIME_COST": "1",
            "CLEARWAY_CONSENT_ARGON2_MEMORY_KIB": "8192",
            "CLEARWAY_TRANSFER_RAIL_URL": self.url("rail"),
            "CLEARWAY_WEBHOOKS_ALLOW_NETWORKS": "127.0.0.0/8",
            "CLEARWAY_WEBHOOKS_SCHEDULE": "0,0.5,1",
            "CLEARWAY_AUDIT_CHECKPOINT_INTERVAL_S": "2",
            "CLEARWAY_TRANSFER_MAINTENANCE_INTERVAL_S": "2",
        }

    def url(self, svc: str) -> str:
        return f"http://127.0.0.1:{self.ports[svc]}"

    async def start(self, http: httpx.AsyncClient) -> None:
        for svc in SERVICES:
            log = open(self.local / f"{svc}.log", "wb")
            self.procs[svc] = subprocess.Popen(
                [sys.executable, "-m", f"clearway.{svc}"],
                env=self.env | {f"CLEARWAY_{svc.upper()}_PORT": str(self.ports[svc])},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for _ in range(600):
                if self.procs[svc].poll() is not None:
                    raise AssertionError(f"{svc} exited: {(self.local / f'{svc}.log').read_text()}")
                try:
                    if (await http.get(f"{self.url(svc)}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"{svc} did not become healthy")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def client(self, role: str, tenant: str = "tnt_demo_alpha") -> dict[str, str]:
        clients = json.loads((self.local / "dev-clients.json").read_text())
        return next(c for c in clients if c["client_id"] == f"{tenant}-{role}")

    async def token(self, http: httpx.AsyncClient, role: str, scope: str) -> str:
        c = self.client(role)
        r = await http.post(
            f"{self.url('consent')}/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(c["client_id"], c["client_secret"]),
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


class Receiver:
    """A partner's webhook endpoint: verifies every delivery with the partner package."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: list[dict] = []
        self.verifier: Verifier | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = 400
        if self.verifier is not None:
            self.events.append({"headers": headers, **self.verifier.verify(body, headers)})
            status = 204
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = uvicorn.Server(
            uvicorn.Config(
                self, host="127.0.0.1", port=self.port, log_config=None, access_log=False
            )
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{self.port}/hooks"
        finally:
            server.should_exit = True
            await task


async def test_one_transfer_flows_through_every_service_under_one_correlation_id(
    platform, tmp_path
):
    services = Platform(platform, tmp_path)
    receiver = Receiver()
    correlation = f"corr_e2e_{uuid.uuid4().hex[:12]}"
    trace = {"X-Correlation-ID": correlation}
    async with httpx.AsyncClient(timeout=30) as http, receiver.serving() as hook_url:
        try:
            await services.start(http)
            hooks = await services.token(http, "webhooks", "webhooks:endpoints:manage")
            partner = await services.token(
                http, "partner", "payments:initiate payments:read consents:write consents:revoke"
            )
            auditor = await services.token(http, "auditor", "audit:read")

            # The partner subscribes to transfer events.
            r = await http.post(
                f"{services.url('webhooks')}/v1/endpoints",
                json={"url": hook_url, "event_types": ["transfer.*"]},
                headers={"Authorization": f"Bearer {hooks}", **trace},
            )
            assert r.status_code == 201, r.text
            receiver.verifier = Verifier([r.json()["secret"]])

            # The user's consent is recorded (and later withdrawn) in the same flow.
            r = await http.post(
                f"{services.url('consent')}/v1/consents",
                json={
                    "purpose": "rent",
                    "subject": "usr_alice",
                    "scopes": ["payments:initiate"],
                    "authorization_details": [
                        {
                            "type": "payment_initiation",
                            "instructedAmount": {"amount": 1250, "currency": "EUR"},
                            "creditorName": "Landlord",
                            "creditorAccount": {"iban": "DE02100100109307118603"},
                        }
                    ],
                },
                headers={"Authorization": f"Bearer {partner}", **trace},
            )
            assert r.status_code == 201, r.text
            consent_id = r.json()["id"]

            # The transfer itself.
            r = await http.post(
                f"{services.url('transfer')}/v1/transfers",
                json={
                    "amount": 1250,
                    "currency": "EUR",
                    "source": "acct_alice",
                    "destination": "acct_landlord",
                    "description": "rent",
                },
                headers={
                    "Authorization": f"Bearer {partner}",
                    "Idempotency-Key": f"idem-{uuid.uuid4().hex}",
                    **trace,
                },
            )
            assert r.status_code == 201, r.text
            transfer = r.json()

            async def settled_webhook():
                return [e for e in receiver.events if e["type"] == "transfer.settled"]

            [delivery] = await eventually(settled_webhook)
            assert delivery["data"]["transfer_id"] == transfer["id"]
            assert delivery["headers"]["x-correlation-id"] == correlation

            r = await http.delete(
                f"{services.url('consent')}/v1/consents/{consent_id}",
                headers={"Authorization": f"Bearer {partner}", **trace},
            )
            assert r.status_code == 200, r.text

            wanted = {
                "consent.created",
                "consent.revoked",
                "transfer.created",
                "transfer.submitted",
                "transfer.settled",
                "webhooks.message.attempted",
            }

            async def whole_flow():
                r = await http.get(
                    f"{services.url('audit')}/v1/audit/records",
                    params={"correlation_id": correlation, "limit": 500},
                    headers={"Authorization": f"Bearer {auditor}"},
                )
                assert r.status_code == 200, r.text
                items = r.json()["items"]
                actions = {i["action"] for i in items}
                return items if wanted <= actions else None

            items = await eventually(whole_flow)
            times = [i["occurred_at"] for i in items]
            assert times == sorted(times), "the flow reads in time order"
            assert {i["correlation_id"] for i in items} == {correlation}
            r = await http.get(
                f"{services.url('audit')}/v1/audit/verify",
                headers={"Authorization": f"Bearer {auditor}"},
            )
            assert r.status_code == 200 and r.json()["ok"], r.text
        finally:
            services.stop()
