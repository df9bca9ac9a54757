"""``make compose-test``: the platform's main flow against docker-compose.yml.

Run after ``deploy/containers/podman.sh up`` (``make compose-up``); talks to the
services through their published ports on 127.0.0.1, as a partner would:

1. client-credentials tokens from consent (secrets from the demo seed in the
   containers' state volume);
2. a webhook endpoint registered, pointing at a receiver on this machine that the
   webhooks container reaches through its network's gateway (host.containers.internal);
3. a transfer created, executed against the sandbox rail with a service token;
4. ``transfer.settled`` received, its Standard Webhooks signature verified with the
   partner package;
5. the flow found in the audit log, searched by the correlation id;
6. when the stack runs Jaeger (``clearway_jaeger_1``), the transfer's trace found in
   it through the query API, with spans of transfer, rail, webhooks and audit.

Exit status 0 when every step passed; prints each step with its time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
from clearway_webhook_verify import Verifier

from clearway.shared.testing.helpers import eventually
from clearway.shared.testing.receiver import VerifyingReceiver

CONSENT, TRANSFER, WEBHOOKS, AUDIT = (f"http://127.0.0.1:{p}" for p in (8003, 8001, 8002, 8004))
JAEGER = "http://127.0.0.1:16686"
TRACED = {"transfer", "sandbox-rail", "webhooks", "audit"}
STATE = "/var/lib/clearway/dev-clients.json"
TENANT = "tnt_demo_alpha"


def running(container: str) -> bool:
    return subprocess.run(["podman", "container", "exists", container]).returncode == 0


def podman_exec(container: str, *cmd: str) -> str:
    return subprocess.run(
        ["podman", "exec", container, *cmd], check=True, capture_output=True, text=True
    ).stdout


async def run(project: str) -> None:
    started = time.monotonic()

    def step(what: str) -> None:
        print(f"[compose-test] {time.monotonic() - started:6.1f}s {what}", flush=True)

    seeded = json.loads(podman_exec(f"{project}_consent_1", "cat", STATE))
    clients = {c["client_id"]: c for c in seeded}
    # The receiver listens on the gateway of the compose network, the address the
    # webhooks container knows as host.containers.internal (and the one address
    # deploy/containers/podman.sh let through its SSRF guard).
    gateway = podman_exec(
        f"{project}_webhooks_1", "getent", "hosts", "host.containers.internal"
    ).split()[0]
    receiver = VerifyingReceiver()
    correlation = f"corr_compose_{uuid.uuid4().hex[:12]}"
    trace = {"X-Correlation-ID": correlation}
    async with receiver.serving(host=gateway) as hook_url:
        async with httpx.AsyncClient(timeout=30) as http:

            async def token(role: str, scope: str) -> str:
                c = clients[f"{TENANT}-{role}"]
                r = await http.post(
                    f"{CONSENT}/oauth/token",
                    data={"grant_type": "client_credentials", "scope": scope},
                    auth=(c["client_id"], c["client_secret"]),
                )
                assert r.status_code == 200, r.text
                return str(r.json()["access_token"])

            hooks = await token("webhooks", "webhooks:endpoints:manage")
            partner = await token("partner", "payments:initiate payments:read")
            auditor = await token("auditor", "audit:read")
            step("tokens issued by consent")

            r = await http.post(
                f"{WEBHOOKS}/v1/endpoints",
                json={"url": hook_url, "event_types": ["transfer.*"]},
                headers={"Authorization": f"Bearer {hooks}", **trace},
            )
            assert r.status_code == 201, r.text
            receiver.verifier = Verifier([r.json()["secret"]])
            step(f"webhook endpoint registered ({hook_url})")

            r = await http.post(
                f"{TRANSFER}/v1/transfers",
                json={
                    "amount": 1250,
                    "currency": "EUR",
                    "source": "acct_alphaTreasury",
                    "destination": "acct_landlord",
                    "description": "compose e2e",
                },
                headers={
                    "Authorization": f"Bearer {partner}",
                    "Idempotency-Key": f"idem-{uuid.uuid4().hex}",
                    **trace,
                },
            )
            assert r.status_code == 201, r.text
            transfer = r.json()
            step(f"transfer {transfer['id']} created")

            async def settled() -> list[dict[str, Any]]:
                return receiver.of_type("transfer.settled")

            [delivery] = await eventually(settled, timeout=120, interval=0.5)
            assert delivery["data"]["transfer_id"] == transfer["id"], delivery
            assert delivery["headers"]["x-correlation-id"] == correlation, delivery
            step("signed webhook transfer.settled received and verified")

            wanted = {"transfer.created", "transfer.submitted", "transfer.settled"}

            async def audited() -> list[str] | None:
                r = await http.get(
                    f"{AUDIT}/v1/audit/records",
                    params={"correlation_id": correlation, "limit": 100},
                    headers={"Authorization": f"Bearer {auditor}"},
                )
                assert r.status_code == 200, r.text
                actions = [i["action"] for i in r.json()["data"]]
                return actions if wanted <= set(actions) else None

            actions = await eventually(audited, timeout=120, interval=0.5)
            step(f"audit search by correlation id: {sorted(set(actions))}")

            if running(f"{project}_jaeger_1"):

                async def traced() -> set[str] | None:
                    r = await http.get(
                        f"{JAEGER}/api/traces",
                        params={
                            "service": "transfer",
                            "tags": json.dumps({"clearway.correlation_id": correlation}),
                            "lookback": "1h",
                        },
                    )
                    if r.status_code != 200:
                        return None
                    seen = {
                        p["serviceName"]
                        for t in r.json().get("data") or []
                        for p in t["processes"].values()
                    }
                    return seen if TRACED <= seen else None

                services = await eventually(traced, timeout=60, interval=1)
                step(f"trace in Jaeger ({JAEGER}/) with spans of {sorted(services)}")
    step("passed")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", default="clearway", help="compose project name")
    asyncio.run(run(ap.parse_args().project))
    return 0


if __name__ == "__main__":
    sys.exit(main())
