"""Issue 15 item 4: a tenant's sandbox twin behaves like the tenant, and never sees it.

One stack on real Postgres and Kafka: the consent service over HTTP (its demo seed
registers the tenant ``tnt_demo_alpha`` and its sandbox twin ``tnt_demo_alpha_test``
alike), the transfer service with its executor, the webhooks service with its
dispatcher, two sandbox-rail instances on two databases standing for the live rail
and the sandbox rail, and a partner's webhook receiver that refuses each endpoint's
first delivery (so the retry shows too). The same scenario runs in live mode and in
test mode: status codes, response shapes (keys and types), the event types on Kafka
and the shapes of the verified webhook payloads must be the same. The isolation
test then asks each mode for the other's data (docs/design.md §10, ADR 0037).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from clearway_webhook_verify import Verifier

from clearway.shared.events import Event
from clearway.shared.mode import Mode, mode_of, sandbox_twin
from clearway.shared.testing.helpers import eventually, free_port, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

LIVE = "tnt_demo_alpha"
TEST = sandbox_twin(LIVE)
TRANSFER = {
    "amount": 4200,
    "currency": "EUR",
    "source": "acct_alphaTreasury",
    "destination": "acct_landlord",
    "description": "Parity",
    "metadata": {"order": "ord_parity"},
}
TOPICS = ("transfer", "webhooks", "consent")


def shape(value: Any) -> Any:
    """Keys and types, not values: what a partner's code depends on."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


class Receiver:
    """A partner's endpoints, one path per mode: verifies every delivery with the
    partner package and refuses the first one of each path with a 503."""

    def __init__(self) -> None:
        self.verifiers: dict[str, Verifier] = {}
        self.deliveries: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.refused: dict[str, str] = {}  # path → webhook-id refused once

    async def __call__(self, scope, receive, send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        path = scope["path"].rsplit("/", 1)[-1]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = 400
        if path in self.verifiers:
            payload = self.verifiers[path].verify(body, headers)  # raises if not genuine
            if path not in self.refused:
                self.refused[path] = headers["webhook-id"]
                status = 503
            else:
                self.deliveries[path].append({"id": headers["webhook-id"], "payload": payload})
                status = 204
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@dataclass
class World:
    consent: httpx.AsyncClient
    transfer: httpx.AsyncClient
    webhooks: httpx.AsyncClient
    receiver: Receiver
    hooks_url: str
    clients: dict[str, str]
    rail_dsns: dict[Mode, str]
    platform: Any
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    async def bearer(self, client_id: str, scope: str, secret: str | None = None) -> dict:
        if (client_id, scope) not in self.tokens:
            r = await self.consent.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "scope": scope},
                auth=(client_id, secret or self.clients[client_id]),
            )
            assert r.status_code == 200, r.text
            self.tokens[client_id, scope] = r.json()["access_token"]
        return {"Authorization": f"Bearer {self.tokens[client_id, scope]}"}

    async def partner(self, tenant: str) -> dict:
        return await self.bearer(f"{tenant}-partner", "payments:initiate payments:read")

    async def hooks(self, tenant: str) -> dict:
        return await self.bearer(f"{tenant}-webhooks", "webhooks:endpoints:manage webhooks:read")

    async def settled(self, tenant: str, transfer_id: str) -> dict | None:
        r = await self.transfer.get(
            f"/v1/transfers/{transfer_id}", headers=await self.partner(tenant)
        )
        return r.json() if r.json().get("status") == "settled" else None

    async def charges(self, mode: Mode) -> set[str]:
        conn = await asyncpg.connect(self.rail_dsns[mode])
        try:
            return {r["reference"] for r in await conn.fetch("SELECT reference FROM rail.charges")}
        finally:
            await conn.close()


@pytest_asyncio.fixture
async def world(platform, other_region_dsn, tmp_path) -> AsyncIterator[World]:
    from clearway.consent.bootstrap import build_app as consent_app
    from clearway.consent.settings import ConsentSettings
    from clearway.rail.bootstrap import build_app as rail_app
    from clearway.rail.settings import RailSettings
    from clearway.transfer.bootstrap import build_app as transfer_app
    from clearway.transfer.settings import TransferSettings
    from clearway.webhooks.bootstrap import build_app as webhooks_app
    from clearway.webhooks.settings import WebhooksSettings

    port = free_port()
    platform = platform.replace(oauth_issuer=f"http://127.0.0.1:{port}", local_dir=tmp_path)
    # the live rail on a database of its own: a transfer can only reach it over HTTP
    rail_dsns = {Mode.LIVE: other_region_dsn, Mode.TEST: platform.database_url}
    receiver = Receiver()
    async with AsyncExitStack() as stack:
        enter = stack.enter_async_context
        consent_url = await enter(
            serve(
                consent_app(
                    ConsentSettings(
                        platform=platform,
                        port=port,
                        seed_demo=True,
                        argon2_time_cost=1,
                        argon2_memory_kib=1024,
                    )
                ),
                port,
            )
        )
        clients = {
            c["client_id"]: c["client_secret"]
            for c in json.loads((tmp_path / "dev-clients.json").read_text())
        }
        rails = {
            mode: await enter(
                serve(rail_app(RailSettings(platform=platform.replace(database_url=dsn))))
            )
            for mode, dsn in rail_dsns.items()
        }
        hooks_url = await enter(serve(receiver, lifespan="off"))
        transfer = transfer_app(
            TransferSettings(
                platform=platform,
                rail_url=rails[Mode.LIVE],
                sandbox_rail_url=rails[Mode.TEST],
                client_secret=clients["clearway-transfer"],
                seed_demo=True,
            )
        )
        webhooks = webhooks_app(
            WebhooksSettings(
                platform=platform,
                allow_networks=["127.0.0.0/8"],
                schedule=(0, 0.3, 1),
                jitter=0,
                poll_interval_s=0.05,
            )
        )
        apps = {}
        for name, app in (("transfer", transfer), ("webhooks", webhooks)):
            await enter(app.router.lifespan_context(app))
            apps[name] = await enter(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")
            )
        consent = await enter(httpx.AsyncClient(base_url=consent_url, timeout=30))
        for http in apps.values():
            await eventually(lambda h=http: _ready(h), timeout=60)
        yield World(
            consent,
            apps["transfer"],
            apps["webhooks"],
            receiver,
            hooks_url,
            clients,
            rail_dsns,
            platform,
        )


async def _ready(http: httpx.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


async def scenario(world: World, tenant: str) -> dict[str, Any]:
    """One partner's first steps, in the mode of ``tenant``: what it sees, step by step."""
    mode = str(mode_of(tenant))
    seen: dict[str, Any] = {}

    def record(step: str, r: httpx.Response) -> httpx.Response:
        kind = r.headers.get("content-type")
        problem = r.json()["type"] if kind == "application/problem+json" else None
        seen[step] = (r.status_code, kind, problem, shape(r.json()))
        return r

    hooks, partner = await world.hooks(tenant), await world.partner(tenant)
    endpoint = record(
        "create endpoint",
        await world.webhooks.post(
            "/v1/endpoints",
            json={"url": f"{world.hooks_url}/hooks/{mode}", "event_types": ["transfer.*"]},
            headers=hooks,
        ),
    ).json()
    world.receiver.verifiers[mode] = Verifier(endpoint["secret"])
    record("list endpoints", await world.webhooks.get("/v1/endpoints", headers=hooks))

    key = {"Idempotency-Key": f"parity-{mode}"}
    created = record(
        "create transfer",
        await world.transfer.post("/v1/transfers", json=TRANSFER, headers=partner | key),
    ).json()
    replay = await world.transfer.post("/v1/transfers", json=TRANSFER, headers=partner | key)
    record("replay transfer", replay)
    seen["replayed header"] = replay.headers.get("idempotent-replayed")
    record(
        "invalid transfer",
        await world.transfer.post(
            "/v1/transfers",
            json={**TRANSFER, "amount": -1},
            headers=partner | {"Idempotency-Key": f"bad-{mode}"},
        ),
    )
    record(
        "someone else's account",
        await world.transfer.post(
            "/v1/transfers",
            json={**TRANSFER, "source": "acct_betaTreasury"},
            headers=partner | {"Idempotency-Key": f"theirs-{mode}"},
        ),
    )
    record("unknown transfer", await world.transfer.get("/v1/transfers/tr_0", headers=partner))
    record("no token", await world.transfer.get(f"/v1/transfers/{created['id']}"))

    await eventually(lambda: world.settled(tenant, created["id"]), timeout=60)
    record(
        "read settled transfer",
        await world.transfer.get(f"/v1/transfers/{created['id']}", headers=partner),
    )
    record(
        "list transfers",
        await world.transfer.get(
            "/v1/transfers", params={"reference": created["reference"]}, headers=partner
        ),
    )

    async def delivered() -> list[dict[str, Any]] | None:
        got = world.receiver.deliveries[mode]
        settled = any(d["payload"]["type"] == "transfer.settled" for d in got)
        # the refused first delivery comes again: same id, signed again
        retried = world.receiver.refused.get(mode) in {d["id"] for d in got}
        return got if settled and retried else None

    deliveries = await eventually(delivered, timeout=60)
    seen["webhook payloads"] = {d["payload"]["type"]: shape(d["payload"]) for d in deliveries}


    async def recorded() -> Any:
        # the receiver has its deliveries before the dispatcher records their outcome:
        # compare the list once every message is recorded as delivered, in both modes
        listed = await world.webhooks.get("/v1/messages", headers=hooks)
        done = all(m["status"] == "delivered" for m in listed.json()["data"])
        return listed if listed.status_code == 200 and done else None

    record("list messages", await eventually(recorded, timeout=60))
    seen["ids"] = {"transfer": created["id"], "reference": created["reference"]}
    seen["endpoint"] = endpoint["id"]
    return seen


async def event_types(platform, tenant: str, expected: set[str]) -> set[str]:
    """The types of the events of ``tenant`` on the platform's topics, read from Kafka
    until every ``expected`` type has arrived (bounded)."""
    consumer = AIOKafkaConsumer(
        **platform.kafka.client_options(), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    types: set[str] = set()
    try:
        await consumer._client.force_metadata_update()  # as clearway-dlt does, for assign()
        topics = [platform.topic(f"clearway.{d}.events.v1") for d in TOPICS]
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for _ in range(60):  # bounded: a few hundred records
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    ev = Event.from_kafka(r.headers, r.value)
                    if ev.tenant == tenant:
                        types.add(ev.type)
            if expected <= types:
                break
    finally:
        await consumer.stop()
    return types


async def test_the_same_scenario_gives_the_same_answers_in_live_and_test_mode(world):
    live = await scenario(world, LIVE)
    test = await scenario(world, TEST)
    ids = {mode: seen.pop("ids") for mode, seen in (("live", live), ("test", test))}
    live.pop("endpoint"), test.pop("endpoint")
    for step in live:
        assert test[step] == live[step], step
    assert live["create transfer"][0] == 201 and live["replayed header"] == "true"
    assert live["unknown transfer"][0] == 404 and live["no token"][0] == 401
    assert set(live["webhook payloads"]) >= {"transfer.created", "transfer.settled"}

    # the same events, each in its own tenant; the webhooks' own events show the retry
    wanted = {"transfer.created", "transfer.settled", "webhooks.message.attempted"}
    live_types = await event_types(world.platform, LIVE, wanted)
    assert wanted <= live_types
    assert await event_types(world.platform, TEST, live_types) == live_types

    # each charge at its own rail
    assert await world.charges(Mode.LIVE) == {ids["live"]["reference"]}
    assert await world.charges(Mode.TEST) == {ids["test"]["reference"]}


async def test_a_live_token_never_sees_sandbox_data_and_a_test_token_never_sees_live_data(world):
    live = await scenario(world, LIVE)
    test = await scenario(world, TEST)
    for mine, theirs, other in ((LIVE, live, test), (TEST, test, live)):
        partner, hooks = await world.partner(mine), await world.hooks(mine)
        r = await world.transfer.get(f"/v1/transfers/{other['ids']['transfer']}", headers=partner)
        assert r.status_code == 404, (mine, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        listed = await world.transfer.get(
            "/v1/transfers", params={"reference": other["ids"]["reference"]}, headers=partner
        )
        assert listed.status_code == 200 and listed.json()["data"] == []
        own = await world.transfer.get(
            f"/v1/transfers/{theirs['ids']['transfer']}", headers=partner
        )
        assert own.status_code == 200
        ep = await world.webhooks.get(f"/v1/endpoints/{other['endpoint']}", headers=hooks)
        assert ep.status_code == 404, (mine, ep.text)
        endpoints = await world.webhooks.get("/v1/endpoints", headers=hooks)
        assert [e["id"] for e in endpoints.json()["data"]] == [theirs["endpoint"]]
    # an endpoint belongs to one mode: each got only its own tenant's transfers
    for mode, seen in (("live", live), ("test", test)):
        got = {d["payload"]["data"].get("transfer_id") for d in world.receiver.deliveries[mode]}
        assert got == {seen["ids"]["transfer"]}, (mode, got)


async def test_a_tenant_admin_registers_test_mode_clients_whose_tokens_act_in_the_sandbox(world):
    admin = await world.bearer(f"{LIVE}-admin", "admin:clients")
    body = {"name": "CI job", "scopes": ["payments:read"], "reason": "sandbox for CI"}
    r = await world.consent.post("/v1/admin/sandbox/clients", json=body, headers=admin)
    assert r.status_code == 201, r.text
    client = r.json()
    assert client["tenant"] == TEST and client["mode"] == "test"
    assert client["client_secret"].startswith("clearway_secret_test_")
    assert r.headers["cache-control"] == "no-store"

    sandbox = await world.bearer(client["client_id"], "payments:read", client["client_secret"])
    test_partner = await world.partner(TEST)
    made = await world.transfer.post(
        "/v1/transfers",
        json=TRANSFER,
        headers=test_partner | {"Idempotency-Key": "seen-by-the-new-client"},
    )
    assert made.status_code == 201
    seen = await world.transfer.get(f"/v1/transfers/{made.json()['id']}", headers=sandbox)
    assert seen.status_code == 200
    live_partner = await world.partner(LIVE)
    made = await world.transfer.post(
        "/v1/transfers", json=TRANSFER, headers=live_partner | {"Idempotency-Key": "live"}
    )
    hidden = await world.transfer.get(f"/v1/transfers/{made.json()['id']}", headers=sandbox)
    assert hidden.status_code == 404

    for refused in (["rail:charges"], ["platform:clients"], ["no:such"]):
        r = await world.consent.post(
            "/v1/admin/sandbox/clients", json={**body, "scopes": refused}, headers=admin
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "scopes"
