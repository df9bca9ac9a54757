"""Consents through the API: validation, tenancy, revocation events, consumption, expiry."""

from __future__ import annotations

import pytest

from clearway.shared.auth import RevocationSet, apply_record
from clearway.shared.testing.helpers import eventually

from .conftest import authorised_token, payment_details, read_events

pytestmark = pytest.mark.integration


async def bearer(consent, client, scope):
    return {"Authorization": f"Bearer {await consent.token(client, scope)}"}


async def test_bad_authorization_details_are_refused_naming_the_field(consent):
    partner = consent.client(0, "partner")
    headers = await bearer(consent, partner, "consents:write")
    bad = payment_details()
    bad["instructedAmount"]["currency"] = "EURO"
    response = await consent.http.post(
        f"{consent.url}/v1/consents",
        json={"purpose": "pay", "authorization_details": [bad]},
        headers=headers,
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/validation-error")
    assert [(e["field"], e["type"]) for e in problem["errors"]] == [
        ("authorization_details[0].instructedAmount.currency", "invalid_authorization_details")
    ]
    missing = await consent.http.post(
        f"{consent.url}/v1/consents", json={"authorization_details": []}, headers=headers
    )
    assert missing.status_code == 422 and "purpose" in missing.json()["detail"]


async def test_a_consent_records_who_what_and_a_reference_and_tenants_never_see_each_other(
    consent,
):
    alpha = consent.client(0, "partner")
    created = await consent.create_consent(alpha, subject="usr_alice")
    assert created["status"] == "AwaitingAuthorisation"
    assert created["reference"].startswith("CW-") and created["client_id"] == alpha["client_id"]
    assert created["status_history"][0]["actor"]["client_id"] == alpha["client_id"]
    own = await consent.http.get(
        f"{consent.url}/v1/consents/{created['id']}",
        headers=await bearer(consent, alpha, "consents:read"),
    )
    assert own.status_code == 200
    beta = consent.client(1, "partner")
    foreign_headers = await bearer(consent, beta, "consents:read consents:revoke")
    foreign = await consent.http.get(
        f"{consent.url}/v1/consents/{created['id']}", headers=foreign_headers
    )
    assert foreign.status_code == 404
    revoke = await consent.http.delete(
        f"{consent.url}/v1/consents/{created['id']}", headers=foreign_headers
    )
    assert revoke.status_code == 404
    listed = await consent.http.get(f"{consent.url}/v1/consents", headers=foreign_headers)
    assert listed.json() == {"data": [], "next_cursor": None, "has_more": False}
    mine = await consent.http.get(
        f"{consent.url}/v1/consents",
        params={"status": "AwaitingAuthorisation"},
        headers=await bearer(consent, alpha, "consents:read"),
    )
    assert [c["id"] for c in mine.json()["data"]] == [created["id"]]
    unknown = await consent.http.get(
        f"{consent.url}/v1/consents",
        params={"status": "Pending"},
        headers=await bearer(consent, alpha, "consents:read"),
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "query.status"


async def test_consents_page_newest_first_with_cursors_bound_to_the_filters(consent):
    partner = consent.client(0, "partner")
    made = [(await consent.create_consent(partner, subject="usr_pat"))["id"] for _ in range(3)]
    headers = await bearer(consent, partner, "consents:read")
    url, seen, params = f"{consent.url}/v1/consents", [], {"limit": 2, "subject": "usr_pat"}
    first = (await consent.http.get(url, params=params, headers=headers)).json()
    assert first["has_more"] is True and len(first["data"]) == 2
    rest = (
        await consent.http.get(
            url, params={**params, "cursor": first["next_cursor"]}, headers=headers
        )
    ).json()
    seen = [c["id"] for c in first["data"] + rest["data"]]
    assert seen == made[::-1] and rest["has_more"] is False and rest["next_cursor"] is None
    moved = await consent.http.get(
        url,
        params={"limit": 2, "subject": "usr_other", "cursor": first["next_cursor"]},
        headers=headers,
    )
    assert moved.status_code == 422 and moved.json()["errors"][0]["field"] == "query.cursor"


async def test_revocation_events_carry_what_every_services_revocation_set_reads(consent):
    partner = consent.client(0, "partner")
    consent_id, _ = await authorised_token(consent, partner)
    first = await consent.http.delete(
        f"{consent.url}/v1/consents/{consent_id}",
        headers=await bearer(consent, partner, "consents:revoke"),
    )
    again = await consent.http.delete(
        f"{consent.url}/v1/consents/{consent_id}",
        headers=await bearer(consent, partner, "consents:revoke"),
    )
    assert first.json()["status"] == again.json()["status"] == "Revoked"
    events = await read_events(
        consent.settings.platform.kafka,
        consent.settings.topic,
        lambda seen: any(e.type == "consent.revoked" for e in seen),
    )
    types = [e.type for e in events if e.subject == consent_id]
    assert types == ["consent.created", "consent.authorised", "consent.revoked"]
    revoked = next(e for e in events if e.type == "consent.revoked")
    assert revoked.dataschema == "schemas/consent/consent.revoked/v2"
    assert revoked.data["actor"]["client_id"] == partner["client_id"]
    revocations = RevocationSet()
    assert apply_record(revocations, revoked.headers(), revoked.body())
    assert len(revocations) == 1


async def test_a_payment_consent_is_consumed_once_by_its_bound_token(consent):
    partner = consent.client(0, "partner")
    consent_id, token = await authorised_token(consent, partner)
    url = f"{consent.url}/v1/consents/{consent_id}/consumption"
    used = await consent.http.post(url, headers={"Authorization": f"Bearer {token}"})
    assert used.status_code == 200 and used.json()["status"] == "Consumed"
    twice = await consent.http.post(url, headers={"Authorization": f"Bearer {token}"})
    assert twice.status_code == 409


async def test_consents_expire(consent):
    partner = consent.client(0, "partner")
    created = await consent.create_consent(partner, expires_in=60)
    async with consent.svc.pool.acquire() as conn:
        await conn.execute(
            "UPDATE consents SET expires_at = now() - interval '1 second' WHERE id = $1",
            created["id"],
        )
    headers = await bearer(consent, partner, "consents:read")

    async def expired() -> bool:
        r = await consent.http.get(f"{consent.url}/v1/consents/{created['id']}", headers=headers)
        return r.json()["status"] == "Expired"

    await eventually(expired, timeout=30)


async def test_a_disabled_client_gets_no_tokens_and_its_tokens_are_refused(consent, resource):
    partner = consent.client(1, "partner")
    token = await consent.token(partner, "payments:read")
    headers = {"Authorization": f"Bearer {token}"}
    assert (
        await consent.http.get(f"{resource.url}/v1/transfers", headers=headers)
    ).status_code == 200
    admin = await bearer(consent, consent.client(1, "admin"), "admin:clients")
    disabled = await consent.http.post(
        f"{consent.url}/v1/admin/clients/{partner['client_id']}/disable",
        json={"reason": "partner offboarded"},
        headers=admin,
    )
    assert disabled.status_code == 200
    assert (await consent.token_response(partner)).status_code == 401

    async def refused() -> bool:
        r = await consent.http.get(f"{resource.url}/v1/transfers", headers=headers)
        return r.status_code == 401

    await eventually(refused, timeout=30)


async def test_a_rotated_secret_overlaps_while_tokens_issued_before_are_refused(consent, resource):
    partner = consent.client(0, "partner")
    before = {"Authorization": f"Bearer {await consent.token(partner, 'payments:read')}"}
    transfers = f"{resource.url}/v1/transfers"
    assert (await consent.http.get(transfers, headers=before)).status_code == 200
    admin = await bearer(consent, consent.client(0, "admin"), "admin:clients")
    # another tenant's admin cannot touch this client
    foreign = await bearer(consent, consent.client(1, "admin"), "admin:clients")
    url = f"{consent.url}/v1/admin/clients/{partner['client_id']}/secret"
    assert (
        await consent.http.post(url, json={"reason": "x" * 5}, headers=foreign)
    ).status_code == 403
    no_reason = await consent.http.post(url, json={}, headers=admin)
    assert no_reason.status_code == 422
    rotated = await consent.http.post(
        url, json={"reason": "quarterly rotation", "overlap_seconds": 600}, headers=admin
    )
    assert rotated.status_code == 200
    new = {**partner, "client_secret": rotated.json()["client_secret"]}
    after = {"Authorization": f"Bearer {await consent.token(new, 'payments:read')}"}
    assert (await consent.token_response(partner)).status_code == 200  # overlap window

    async def old_token_refused() -> bool:
        return (await consent.http.get(transfers, headers=before)).status_code == 401

    await eventually(old_token_refused, timeout=30)
    assert (await consent.http.get(transfers, headers=after)).status_code == 200
    events = await read_events(
        consent.settings.platform.kafka,
        consent.settings.topic,
        lambda seen: (
            {"client.credentials_rotated", "consent.admin_action"} <= {e.type for e in seen}
        ),
    )
    action = next(e for e in events if e.type == "consent.admin_action")
    assert action.data["action"] == "rotate_client_secret"
    assert action.data["reason"] == "quarterly rotation"
    assert action.data["actor"]["client_id"] == "tnt_demo_alpha-admin"
