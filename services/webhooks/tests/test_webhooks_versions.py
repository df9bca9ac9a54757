"""Webhook payloads in the endpoint's dated version (docs/design.md §10): an endpoint
pinned to 2026-11-01 and one on 2026-12-01 get the same event in two shapes, each signed
over the bytes it received; an endpoint moved to another version gets the new shape."""

from __future__ import annotations

import pytest
from standardwebhooks.webhooks import Webhook

from clearway.shared.events import new_event
from clearway.shared.schemas import default_registry
from clearway.shared.versions import VERSION_CLAIM

from .conftest import ALL_SCOPES, AUDIENCE, TENANT

pytestmark = pytest.mark.integration

OLD, NEW = "2026-11-01", "2026-12-01"


def settled(i: int):  # type: ignore[no-untyped-def]
    return new_event(
        type="transfer.settled",
        source="/tests",
        aggregate_id=f"tr_v{i}",
        aggregate_version=3,
        data={
            "transfer_id": f"tr_v{i}",
            "reference": f"CWV{i}",
            "amount": 12500,
            "currency": "EUR",
            "status": "settled",
            "rail_charge_id": f"ch_{i}",
        },
        dataschema=default_registry().get("transfer.settled", 1).dataschema,
        correlation_id=f"corr_v{i}",
        tenant=TENANT,
    )


async def test_each_endpoint_gets_the_payload_of_its_version_signed(
    service, issuer, receiver_factory, publish, eventually
):
    old_rx, new_rx = await receiver_factory(), await receiver_factory()
    subscribe = {"event_types": ["transfer.*"]}
    # Pinned by the creating request's version (a token without a pin: 2026-11-01) ...
    old = await service.create_endpoint(old_rx.url, **subscribe)
    assert old["api_version"] == OLD
    # ... or by the client's pin in its token.
    pinned = issuer.token(
        sub="usr_ops",
        client_id="cli_new",
        scopes=ALL_SCOPES,
        audience=AUDIENCE,
        tenant=TENANT,
        extra_claims={VERSION_CLAIM: NEW},
    )
    r = await service.http.post(
        "/v1/endpoints",
        json={"url": new_rx.url, **subscribe},
        headers={"Authorization": f"Bearer {pinned}"},
    )
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["api_version"] == NEW

    await publish([settled(1)])
    await eventually(lambda: old_rx.requests and new_rx.requests)

    [to_old], [to_new] = old_rx.requests, new_rx.requests
    assert to_old.json["data"]["amount"] == 12500 and to_old.json["data"]["currency"] == "EUR"
    assert to_new.json["data"]["amount"] == {"value": "125.00", "currency": "EUR"}
    assert "currency" not in to_new.json["data"]
    assert to_old.json["event_id"] == to_new.json["event_id"]
    Webhook(old["secret"]).verify(to_old.body, to_old.headers)
    Webhook(new["secret"]).verify(to_new.body, to_new.headers)

    # Overridable on update; a version not served is a 422 naming the field.
    bad = await service.http.patch(
        f"/v1/endpoints/{old['id']}", json={"api_version": "2020-01-01"}, headers=service.auth
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "api_version"
    moved = await service.http.patch(
        f"/v1/endpoints/{old['id']}", json={"api_version": NEW}, headers=service.auth
    )
    assert moved.status_code == 200 and moved.json()["api_version"] == NEW

    await publish([settled(2)])
    await eventually(lambda: len(old_rx.requests) == 2)
    assert old_rx.requests[1].json["data"]["amount"] == {"value": "125.00", "currency": "EUR"}
