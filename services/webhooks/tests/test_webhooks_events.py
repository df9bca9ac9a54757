"""Webhooks' own events: written by the kit's EventWriter with deterministic ids and the actor."""

from __future__ import annotations

import json

import pytest

from clearway.shared.actor import Actor
from clearway.shared.events import event_id, header_map, headers_from_json

from .conftest import ALL_SCOPES, AUDIENCE, TENANT

pytestmark = pytest.mark.integration


async def test_admin_actions_record_the_delegated_actor_with_ids_from_the_endpoint_version(
    service_factory, settings, issuer
):
    quiet = settings.replace(run_relay=False, run_consumer=False, run_dispatcher=False)
    service = await service_factory(quiet)
    # RFC 8693: support_7 acts for usr_ops (outermost act = current actor).
    token = issuer.token(
        sub="usr_ops",
        client_id="cli_partner_admin",
        scopes=ALL_SCOPES,
        audience=AUDIENCE,
        tenant=TENANT,
        extra_claims={"act": {"sub": "support_7", "act": {"sub": "svc_console"}}},
    )
    auth = {"Authorization": f"Bearer {token}"}
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["platform.*"]}
    created = (await service.http.post("/v1/endpoints", json=body, headers=auth)).json()
    ep = created["id"]
    for _ in range(2):  # the same change twice is two changes: two versions, two ids
        r = await service.http.patch(f"/v1/endpoints/{ep}", json={"description": "x"}, headers=auth)
        assert r.status_code == 200
    r = await service.http.post(f"/v1/endpoints/{ep}/secret/rotate", json={}, headers=auth)
    assert r.status_code == 200, r.text
    assert (await service.http.delete(f"/v1/endpoints/{ep}", headers=auth)).status_code == 204

    rows = await service.pool.fetch("SELECT event_id, headers, payload FROM outbox ORDER BY id")
    payloads = [json.loads(bytes(r["payload"])) for r in rows]
    assert [p["action"] for p in payloads] == [
        "endpoint.created",
        "endpoint.updated",
        "endpoint.updated",
        "endpoint.secret_rotated",
        "endpoint.deleted",
    ]
    assert [r["event_id"] for r in rows] == [
        event_id(ep, v, "webhooks.admin_action") for v in range(1, 6)
    ]
    for row, payload in zip(rows, payloads, strict=True):
        assert Actor.from_data(payload["actor"]) == Actor(
            "usr_ops", "cli_partner_admin", ("support_7", "svc_console")
        )
        headers = header_map(headers_from_json(row["headers"]))
        assert headers["ce_source"] == "/clearway/webhooks"
        assert headers["ce_subject"] == ep


async def test_a_resend_and_a_replay_carry_the_persons_reason_into_their_audit_events(
    service_factory, settings, issuer
):
    """The console asks for a reason before re-delivering; the owning service puts it in
    its ``webhooks.admin_action`` (docs/design.md §8), so the audit trail has it."""
    quiet = settings.replace(run_relay=False, run_consumer=False, run_dispatcher=False)
    service = await service_factory(quiet)
    token = issuer.token(
        sub="usr_alice", client_id="clearway-console", scopes=ALL_SCOPES, audience=AUDIENCE,
        tenant=TENANT,
    )
    auth = {"Authorization": f"Bearer {token}"}
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["platform.*"]}
    ep = (await service.http.post("/v1/endpoints", json=body, headers=auth)).json()["id"]
    replay = {
        "endpoint_id": ep,
        "since": "2026-01-01T00:00:00Z",
        "until": "2026-01-02T00:00:00Z",
        "reason": "partner outage 1 January",
    }
    r = await service.http.post("/v1/replays", json=replay, headers=auth)
    assert r.status_code == 202, r.text
    empty = await service.http.post(
        "/v1/replays", json={**replay, "reason": ""}, headers=auth
    )
    assert empty.status_code == 422
    missing = await service.http.post(
        "/v1/messages/msg_unknown/resend", json={"reason": "x"}, headers=auth
    )
    assert missing.status_code == 404

    rows = await service.pool.fetch("SELECT payload FROM outbox ORDER BY id")
    actions = {p["action"]: p for p in (json.loads(bytes(r["payload"])) for r in rows)}
    assert actions["replay.started"]["reason"] == "partner outage 1 January"
    assert actions["replay.started"]["actor"]["subject"] == "usr_alice"
