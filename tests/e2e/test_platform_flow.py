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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from clearway_webhook_verify import Verifier

from clearway.shared.events import Event, events_topic
from clearway.shared.testing.helpers import eventually, free_port, kafka_env
from clearway.shared.testing.receiver import VerifyingReceiver

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

SERVICES = ["consent", "rail", "transfer", "webhooks", "audit"]


class Platform:
    """The services started with ``python -m clearway.<svc>``, as ``make run`` does."""

    services = SERVICES

    def __init__(self, settings, local: Path) -> None:
        self.ports = {svc: free_port() for svc in self.services}
        self.local = local
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {
            **os.environ,
            "CLEARWAY_DATABASE_URL": settings.database_url,
            **kafka_env(settings),
            "CLEARWAY_TOPIC_PREFIX": settings.topic_prefix,
            "CLEARWAY_OAUTH_ISSUER": self.url("consent"),
            "CLEARWAY_LOCAL_DIR": str(local),
            "CLEARWAY_CONSENT_SEED_DEMO": "1",
            "CLEARWAY_TRANSFER_SEED_DEMO": "1",
            "CLEARWAY_CONSENT_ARGON2_TIME_COST": "1",
            "CLEARWAY_CONSENT_ARGON2_MEMORY_KIB": "8192",
            "CLEARWAY_TRANSFER_RAIL_URL": self.url("rail"),
            "CLEARWAY_WEBHOOKS_ALLOW_NETWORKS": "127.0.0.0/8",
            "CLEARWAY_WEBHOOKS_SCHEDULE": "0,0.5,1",
            "CLEARWAY_AUDIT_CHECKPOINT_INTERVAL_S": "2",
            "CLEARWAY_TRANSFER_MAINTENANCE_INTERVAL_S": "2",
        }

    def service_env(self, svc: str) -> dict[str, str]:
        """What one service needs beyond the shared environment (after the earlier ones)."""
        if svc == "transfer":  # its rail tokens: the client consent seeded for it
            return {"CLEARWAY_TRANSFER_CLIENT_SECRET": self.client_secret("clearway-transfer")}
        return {}

    def url(self, svc: str) -> str:
        return f"http://127.0.0.1:{self.ports[svc]}"

    async def start(self, http: httpx.AsyncClient) -> None:
        for svc in self.services:
            log = open(self.local / f"{svc}.log", "wb")
            env = self.env | {f"CLEARWAY_{svc.upper()}_PORT": str(self.ports[svc])}
            env |= self.service_env(svc)
            self.procs[svc] = subprocess.Popen(
                [sys.executable, "-m", f"clearway.{svc}"],
                env=env,
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

    def client_secret(self, client_id: str) -> str:
        clients = json.loads((self.local / "dev-clients.json").read_text())
        return str(next(c for c in clients if c["client_id"] == client_id)["client_secret"])

    async def token(self, http: httpx.AsyncClient, role: str, scope: str) -> str:
        c = self.client(role)
        r = await http.post(
            f"{self.url('consent')}/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(c["client_id"], c["client_secret"]),
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


TOPICS = ("consent", "transfer", "webhooks")


@dataclass(frozen=True)
class Published:
    """An event as it sits on its topic: where (partition, offset) and what."""

    topic: str
    partition: int
    offset: int
    event: Event


async def events_of(platform, correlation: str) -> dict[str, Published]:
    """Every event of the flow's topics carrying ``correlation``, by event id, read
    straight from Kafka (to the end offsets as of now)."""
    topics = [platform.topic(events_topic(d)) for d in TOPICS]
    consumer = AIOKafkaConsumer(
        **platform.kafka.client_options(), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    out: dict[str, Published] = {}
    try:
        await consumer._client.force_metadata_update()  # as clearway-dlt does, for assign()
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        assert tps, "the flow's topics exist"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        for _ in range(120):  # bounded: a few hundred records, read in seconds
            if not pending:
                break
            for tp, records in (await consumer.getmany(*pending, timeout_ms=1000)).items():
                for r in records:
                    ev = Event.from_kafka(r.headers, r.value)
                    if ev.correlation_id == correlation and r.offset < end[tp]:
                        out[ev.id] = Published(tp.topic, tp.partition, r.offset, ev)
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
        assert not pending, f"could not read {pending} to its end"
    finally:
        await consumer.stop()
    return out


def _utc(value: str | datetime) -> datetime:
    t = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def assert_causal_order(
    items: list[dict[str, Any]], flow: dict[str, Published], transfer_id: str
) -> None:
    """The audit trail of the flow in the order things happened, checked against
    the events themselves rather than the search's own ORDER BY."""
    # Every record is one of the flow's events, dated when that event says it
    # happened (its ce_time), not when audit got to it.
    for i in items:
        assert i["source_event_id"] in flow, i
        ev = flow[i["source_event_id"]].event
        assert (i["type"], _utc(i["occurred_at"])) == (ev.type, _utc(ev.time)), i
    # So the trail reads in the order the events themselves say they happened.
    order = [i["source_event_id"] for i in items]
    happened = [flow[e].event.time for e in order]
    assert happened == sorted(happened), [flow[e].event.type for e in order]
    # Nothing the partner, the user or the transfer did is missing from the trail.
    audited = {i["source_event_id"] for i in items}
    business = {k for k, p in flow.items() if not p.event.type.startswith("webhooks.")}
    assert business <= audited, {flow[k].event.type for k in business - audited}

    # The transfer's own history, in the order its topic holds it (one key, one
    # partition, offsets in write order): created → submitted → settled.
    history = sorted(
        (p for p in flow.values() if p.event.subject == transfer_id),
        key=lambda p: (p.partition, p.offset),
    )
    assert [p.event.type for p in history] == [
        "transfer.created",
        "transfer.submitted",
        "transfer.settled",
    ]
    assert len({(p.topic, p.partition) for p in history}) == 1
    assert [p.event.time for p in history] == sorted(p.event.time for p in history)
    # One trace follows the transfer through the executor (docs/design.md §11).
    traces = {i["trace_id"] for i in items if i["source_event_id"] in {p.event.id for p in history}}
    assert len(traces) == 1 and None not in traces, traces
    assert [e for e in order if e in {p.event.id for p in history}] == [p.event.id for p in history]

    # The test's own steps, one after the other: the partner's endpoint registered (an
    # admin action of its tenant), consent given, transfer made and settled (the
    # partner saw the webhook), then the consent withdrawn.
    steps = [i["action"] for i in items if not i["action"].startswith("webhooks.")]
    assert steps == [
        "endpoint.created",
        "consent.created",
        "transfer.created",
        "transfer.submitted",
        "transfer.settled",
        "consent.revoked",
    ], steps

    # Each delivery attempt links back to the event it delivered, which is part of
    # the same flow and comes before it in the trail.
    attempts = [i for i in items if i["action"] == "webhooks.message.attempted"]
    delivered = []
    for a in attempts:
        data = flow[a["source_event_id"]].event.data
        cause = flow.get(data["event_id"])
        assert cause is not None, data
        assert cause.event.type == data["event_type"]
        assert order.index(cause.event.id) < order.index(a["source_event_id"])
        delivered.append((data["event_type"], data["outcome"]))
    assert sorted(delivered) == [
        ("transfer.created", "success"),
        ("transfer.settled", "success"),
        ("transfer.submitted", "success"),
    ], delivered


async def test_one_transfer_flows_through_every_service_under_one_correlation_id(
    platform, tmp_path
):
    services = Platform(platform, tmp_path)
    receiver = VerifyingReceiver()
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

            # The transfer itself: client credentials debit the tenant's own account
            # (seeded); the user's account would need a token bound to her consent.
            rent = {
                "amount": 1250,
                "currency": "EUR",
                "source": "acct_alphaTreasury",
                "destination": "acct_landlord",
                "description": "rent",
            }
            headers = {
                "Authorization": f"Bearer {partner}",
                "Idempotency-Key": f"idem-{uuid.uuid4().hex}",
                **trace,
            }
            r = await http.post(
                f"{services.url('transfer')}/v1/transfers",
                json={**rent, "source": "acct_alice"},
                headers={**headers, "Idempotency-Key": f"idem-{uuid.uuid4().hex}"},
            )
            assert r.status_code == 403, r.text
            assert r.json()["errors"][0]["field"] == "source"
            r = await http.post(
                f"{services.url('transfer')}/v1/transfers", json=rent, headers=headers
            )
            assert r.status_code == 201, r.text
            transfer = r.json()

            async def settled_webhook():
                return receiver.of_type("transfer.settled")

            [delivery] = await eventually(settled_webhook)
            assert delivery["data"]["transfer_id"] == transfer["id"]
            assert receiver.rejected == 0, "a delivery failed the partner's verification"
            assert delivery["headers"]["x-correlation-id"] == correlation
            # The transfer service charged with a consent-issued service token; a
            # partner's token, or none, gets nowhere at the rail.
            charge = {
                "reference": "CWE2E0001",
                "amount": 1,
                "currency": "EUR",
                "source": "acct_x",
                "destination": "acct_y",
            }
            rail_charges = f"{services.url('rail')}/v1/charges"
            assert (await http.post(rail_charges, json=charge)).status_code == 401
            r = await http.post(
                rail_charges, json=charge, headers={"Authorization": f"Bearer {partner}"}
            )
            assert r.status_code == 401, r.text  # not for the rail's audience

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
                    params={"correlation_id": correlation, "limit": 100},
                    headers={"Authorization": f"Bearer {auditor}"},
                )
                assert r.status_code == 200, r.text
                items = r.json()["data"]
                actions = [i["action"] for i in items]
                # One delivery attempt per transfer event (created, submitted, settled).
                attempts = actions.count("webhooks.message.attempted")
                return items if wanted <= set(actions) and attempts >= 3 else None

            items = await eventually(whole_flow)
            assert {i["correlation_id"] for i in items} == {correlation}
            flow = await events_of(platform, correlation)
            assert_causal_order(items, flow, transfer["id"])
            r = await http.post(
                f"{services.url('audit')}/v1/audit/verifications",
                headers={"Authorization": f"Bearer {auditor}"},
            )
            assert r.status_code == 202, r.text

            async def verified():
                job = await http.get(
                    services.url("audit") + r.headers["location"],
                    headers={"Authorization": f"Bearer {auditor}"},
                )
                return job.json() if job.json()["state"] in ("done", "error") else None

            assert (await eventually(verified))["ok"] is True
        finally:
            services.stop()
