"""The endpoints API: secrets shown once, bad input answered as problems, tenants apart."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import AsyncIterator

import pytest
from clearway_webhook_verify import InvalidSignature, Verifier
from standardwebhooks.webhooks import Webhook

from clearway.shared.auth import route_scopes

pytestmark = pytest.mark.integration


async def test_an_endpoint_is_created_with_a_secret_shown_once_then_listed_updated_and_deleted(
    service, receiver_factory
):
    receiver = await receiver_factory()
    created = await service.create_endpoint(receiver.url, description="ledger sync")
    assert created["secret"].startswith("whsec_") and created["id"].startswith("ep_")
    got = await service.http.get(f"/v1/endpoints/{created['id']}", headers=service.auth)
    assert got.status_code == 200 and "secret" not in got.json()
    stored = await service.pool.fetchval("SELECT sealed FROM endpoint_secrets")
    assert created["secret"].encode() not in bytes(stored), "secrets are encrypted at rest"

    patched = await service.http.patch(
        f"/v1/endpoints/{created['id']}",
        json={"rate_limit_per_s": 5, "event_types": ["platform.test_event"]},
        headers=service.auth,
    )
    assert patched.json()["rate_limit_per_s"] == 5 and patched.json()["event_types"] == [
        "platform.test_event"
    ]
    listed = (await service.http.get("/v1/endpoints", headers=service.auth)).json()
    assert listed == {"data": [patched.json()], "next_cursor": None, "has_more": False}
    assert (
        await service.http.delete(f"/v1/endpoints/{created['id']}", headers=service.auth)
    ).status_code == 204
    assert (
        await service.http.get(f"/v1/endpoints/{created['id']}", headers=service.auth)
    ).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"url": "http://169.254.169.254/", "event_types": ["platform.*"]}, 422, "url"),
        ({"url": "http://10.0.0.1/hook", "event_types": ["platform.*"]}, 422, "url"),
        ({"url": "not a url", "event_types": ["platform.*"]}, 422, "url"),
        ({"url": "http://127.0.0.1:9/h", "event_types": ["nothing.known"]}, 422, "event_types"),
        ({"url": "http://127.0.0.1:9/h", "event_types": []}, 422, "event_types"),
        ({"url": "http://127.0.0.1:9/h"}, 422, "event_types"),
    ],
)
async def test_bad_input_gets_a_problem_naming_the_field(service, body, status, field):
    r = await service.http.post("/v1/endpoints", json=body, headers=service.auth)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/validation-error")
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_an_oversized_payload_is_refused_with_413(service):
    body = {
        "url": "http://127.0.0.1:9/h",
        "event_types": ["platform.*"],
        "description": "x" * 100_000,
    }
    r = await service.http.post("/v1/endpoints", json=body, headers=service.auth)
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")

    # The same body streamed without a Content-Length (chunked): the limit is
    # counted on the stream, not read from a header the client may leave out.
    async def chunked() -> AsyncIterator[bytes]:
        raw = json.dumps(body).encode()
        for start in range(0, len(raw), 8192):
            yield raw[start : start + 8192]

    r = await service.http.post(
        "/v1/endpoints",
        content=chunked(),
        headers={**service.auth, "Content-Type": "application/json"},
    )
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
    assert await service.pool.fetchval("SELECT count(*) FROM endpoints") == 0


async def test_scopes_are_required_and_tenants_never_see_each_other(
    service, token, receiver_factory
):
    receiver = await receiver_factory()
    created = await service.create_endpoint(receiver.url)
    read_only = {"Authorization": f"Bearer {token('webhooks:read')}"}
    r = await service.http.post(
        "/v1/endpoints", json={"url": receiver.url, "event_types": ["*"]}, headers=read_only
    )
    assert r.status_code == 403
    assert (
        await service.http.post("/v1/messages/msg_x/resend", headers=read_only)
    ).status_code == 403
    assert (await service.http.get("/v1/endpoints")).status_code == 401
    other = {"Authorization": f"Bearer {token(tenant='ten_other')}"}
    assert (
        await service.http.get(f"/v1/endpoints/{created['id']}", headers=other)
    ).status_code == 404
    assert (await service.http.get("/v1/endpoints", headers=other)).json()["data"] == []
    scopes = route_scopes(service.app)
    public = {path for (method, path), s in scopes.items() if not s}
    assert public == {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/event-types",
        "/v1/webhooks/signing-keys",
    }


async def test_endpoints_page_with_cursors_bound_to_the_tenant(service, token, receiver_factory):
    receiver = await receiver_factory()
    made = [(await service.create_endpoint(receiver.url))["id"] for _ in range(3)]
    seen, params = [], {"limit": 2}
    for _ in range(3):
        body = (await service.http.get("/v1/endpoints", params=params, headers=service.auth)).json()
        seen += [e["id"] for e in body["data"]]
        if not body["has_more"]:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == made and body["next_cursor"] is None
    first = (
        await service.http.get("/v1/endpoints", params={"limit": 1}, headers=service.auth)
    ).json()
    other = {"Authorization": f"Bearer {token(tenant='ten_other')}"}
    r = await service.http.get(
        "/v1/endpoints", params={"cursor": first["next_cursor"]}, headers=other
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.cursor"
    too_many = await service.http.get("/v1/endpoints", params={"limit": 101}, headers=service.auth)
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "query.limit"


async def test_the_event_catalog_lists_every_event_type_with_its_schema_and_changelog(service):
    r = await service.http.get("/v1/event-types")
    types = {t["type"]: t for t in r.json()["data"]}
    assert {
        "platform.test_event",
        "webhooks.message.attempt.exhausted",
        "webhooks.endpoint.disabled",
    } <= set(types)
    exhausted = types["webhooks.message.attempt.exhausted"]
    assert "message_id" in exhausted["schema"]["properties"] and "## v1" in exhausted["changelog"]


async def test_after_rotation_deliveries_carry_both_signatures_until_the_grace_period_ends(
    service, receiver_factory, publish, make_event, eventually
):
    receiver = await receiver_factory()
    created = await service.create_endpoint(receiver.url)
    rotated = await service.http.post(
        f"/v1/endpoints/{created['id']}/secret/rotate",
        json={"grace_seconds": 3600},
        headers=service.auth,
    )
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    await publish([make_event(1, run="rot")])
    await eventually(lambda: len(receiver.requests) >= 1)
    delivery = receiver.requests[0]
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    Webhook(created["secret"]).verify(delivery.body, delivery.headers)  # receiver with the old one
    Verifier(new_secret).verify(delivery.body, delivery.headers)

    await service.http.post(
        f"/v1/endpoints/{created['id']}/secret/rotate",
        json={"grace_seconds": 0},
        headers=service.auth,
    )
    await publish([make_event(2, run="rot")])
    await eventually(lambda: len(receiver.requests) >= 2)
    assert len(receiver.requests[1].headers["webhook-signature"].split(" ")) == 1


def own_secret(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def non_canonical(secret: str) -> str:
    """The same bytes with nonzero pad bits in the last character (RFC 4648 §3.5)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(secret[-2])
    return secret[:-2] + alphabet[(last & ~3) | 1] + "="


async def test_a_partners_own_secret_signs_the_next_delivery_and_is_never_echoed_or_logged(
    service_factory, settings, receiver_factory, publish, make_event, eventually, caplog
):
    """ADR 0049: the partner brings the secret; the platform seals it, signs with it
    and shows it nowhere: not in the answer, a log line or the audit record."""
    caplog.set_level(logging.DEBUG)
    # no relay: the audit record stays in the outbox for the test to read
    service = await service_factory(settings.replace(run_relay=False))
    receiver = await receiver_factory()
    created = await service.create_endpoint(receiver.url)
    mine = own_secret(os.urandom(32))
    rotated = await service.http.post(
        f"/v1/endpoints/{created['id']}/secret/rotate",
        json={"secret": mine, "grace_seconds": 0, "reason": "yearly rotation"},
        headers=service.auth,
    )
    assert rotated.status_code == 200, rotated.text
    assert "secret" not in rotated.json() and "previous_secrets_expire_at" in rotated.json()

    await publish([make_event(1, run="own")])
    await eventually(lambda: len(receiver.requests) >= 1)
    delivery = receiver.requests[0]
    Verifier(mine).verify(delivery.body, delivery.headers)  # the receiver with its own secret
    Webhook(mine).verify(delivery.body, delivery.headers)
    with pytest.raises(InvalidSignature):  # grace 0: the platform's one is gone
        Verifier(created["secret"]).verify(delivery.body, delivery.headers)

    key = mine.removeprefix("whsec_")
    outbox = await service.pool.fetch("SELECT headers::text AS h, payload FROM outbox")
    audited = [json.loads(bytes(r["payload"])) for r in outbox]
    rotation = next(p for p in audited if p.get("action") == "endpoint.secret_rotated")
    assert rotation["reason"] == "yearly rotation"
    assert all(key not in r["h"] and key.encode() not in bytes(r["payload"]) for r in outbox)
    stored = await service.pool.fetch("SELECT sealed FROM endpoint_secrets")
    assert all(key.encode() not in bytes(r["sealed"]) for r in stored)
    assert key not in caplog.text

    # Without a secret of its own, the API generates one and shows it once, as before.
    generated = await service.http.post(
        f"/v1/endpoints/{created['id']}/secret/rotate", json={}, headers=service.auth
    )
    assert generated.json()["secret"].startswith("whsec_")


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwGk8Sy0Cq3fM=", "whsec_"),
        ("whsec_not base64 at all!!", "base64"),
        (own_secret(os.urandom(32)).rstrip("="), "base64"),
        (non_canonical(own_secret(os.urandom(32))), "canonical"),
        (own_secret(os.urandom(16)), "24 to 64 bytes"),
        (own_secret(os.urandom(65)), "24 to 64 bytes"),
        (own_secret(bytes(32)), "random"),
        (own_secret(b"\xaa" * 48), "random"),
        (own_secret(bytes(range(40))), "random"),
        (own_secret(b"secret12" * 4), "random"),
    ],
)
async def test_a_weak_or_malformed_own_secret_is_refused_naming_the_field_never_the_value(
    service, receiver_factory, secret, why, caplog
):
    caplog.set_level(logging.DEBUG)
    receiver = await receiver_factory()
    created = await service.create_endpoint(receiver.url)
    r = await service.http.post(
        f"/v1/endpoints/{created['id']}/secret/rotate",
        json={"secret": secret, "reason": "trying"},
        headers=service.auth,
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    errors = r.json()["errors"]
    assert [e["field"] for e in errors] == ["secret"] and why in errors[0]["message"]
    value = secret.removeprefix("whsec_")
    assert value not in r.text and value not in caplog.text
    count = "SELECT count(*) FROM endpoint_secrets WHERE endpoint_id = $1"
    assert await service.pool.fetchval(count, created["id"]) == 1  # nothing rotated


async def test_an_operator_rotates_every_secret_of_a_tenant_at_once_in_a_breach(
    service, issuer, receiver_factory, publish, make_event, eventually
):
    receiver = await receiver_factory()
    created = await service.create_endpoint(receiver.url)
    route = "/v1/platform/tenants/ten_acme/secrets/rotation"

    def bearer(tenant: str) -> dict[str, str]:
        token = issuer.token(
            sub="usr_op",
            client_id="clearway-operator",
            scopes=["platform:webhooks"],
            audience="clearway-webhooks",
            tenant=tenant,
        )
        return {"Authorization": f"Bearer {token}"}

    # a tenant's own client, even one holding the scope, is not an operator
    refused = await service.http.post(route, json={"reason": "breach"}, headers=bearer("ten_acme"))
    assert refused.status_code == 403 and refused.json()["type"].endswith("platform-operator-only")
    no_reason = await service.http.post(route, json={}, headers=bearer("tnt_platform"))
    assert no_reason.status_code == 422
    r = await service.http.post(route, json={"reason": "breach"}, headers=bearer("tnt_platform"))
    assert r.status_code == 200, r.text
    assert r.json() == {"tenant": "ten_acme", "rotated_endpoints": [created["id"]]}
    assert "whsec_" not in r.text  # the new secrets are handed to nobody

    await publish([make_event(1, run="breach")])
    await eventually(lambda: len(receiver.requests) >= 1)
    delivery = receiver.requests[0]
    assert len(delivery.headers["webhook-signature"].split(" ")) == 1  # the old one is gone
    with pytest.raises(InvalidSignature):
        Verifier(created["secret"]).verify(delivery.body, delivery.headers)


async def test_a_disabled_endpoint_stores_events_as_skipped_and_a_resend_delivers_them_once_enabled(
    service, receiver_factory, publish, make_event, eventually
):
    receiver = await receiver_factory()
    created = await service.create_endpoint(receiver.url)
    r = await service.http.post(
        f"/v1/endpoints/{created['id']}/disable",
        json={"reason": "maintenance"},
        headers=service.auth,
    )
    assert r.json()["disabled"] is True
    event = make_event(1, run="skip")
    await publish([event])

    async def skipped():
        r = await service.http.get(
            "/v1/messages", params={"status": "skipped"}, headers=service.auth
        )
        return r.json()["data"]

    await eventually(lambda: _nonempty(skipped))
    msg = (await skipped())[0]
    assert receiver.requests == []
    await service.http.post(f"/v1/endpoints/{created['id']}/enable", headers=service.auth)
    r = await service.http.post(
        f"/v1/messages/{msg['id']}/resend", json={"reason": "endpoint back"}, headers=service.auth
    )
    assert r.status_code == 202
    await eventually(lambda: len(receiver.requests) >= 1)
    assert receiver.requests[0].headers["webhook-id"] == msg["id"]


async def _nonempty(probe) -> bool:
    return bool(await probe())
