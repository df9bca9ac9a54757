"""The vault over HTTP: tokenize, dedupe, tenant isolation, audited detokenization, and
the card number nowhere in the database in clear."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from clearway.shared.crypto import Context, RecordUnreadable
from clearway.shared.crypto.tenant_keys import shred_tenant
from clearway.shared.testing.helpers import eventually

from .conftest import VISA, VISA_DIGITS

pytestmark = pytest.mark.integration


async def test_a_valid_card_gets_a_token_and_the_same_card_the_same_token(vault):
    first = await vault.tokenize(holder_name="Ada Lovelace")
    again = await vault.tokenize(number=VISA_DIGITS)
    assert (first.status_code, again.status_code) == (201, 200), first.text
    card = first.json()
    assert card["id"].startswith("tok_") and again.json() == card
    assert (card["brand"], card["bin"], card["last4"]) == ("visa", "41111111", "1111")
    assert (card["exp_month"], card["exp_year"]) == (12, 2099)
    assert card["fingerprint"].startswith("fp_")
    assert VISA_DIGITS not in first.text
    other = (await vault.tokenize(tenant="ten_b")).json()
    assert other["id"] != card["id"] and other["fingerprint"] != card["fingerprint"]


@pytest.mark.parametrize(
    ("card", "field", "why"),
    [
        ({"number": "4111 1111 1111 1112"}, "number", "Luhn"),
        ({"number": "6011 1111 1111 1117"}, "number", "unsupported card brand"),
        ({"number": "4111 1111 111"}, "number", "13 to 19"),
        ({"exp_month": 1, "exp_year": 2020}, "exp_year", "expired"),
        ({"exp_month": 13}, "exp_month", "1 to 12"),
    ],
)
async def test_a_bad_card_is_a_422_naming_the_field(vault, card, field, why):
    r = await vault.tokenize(**card)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    [error] = r.json()["errors"]
    assert error["field"] == field and why in error["message"]
    assert card.get("number", VISA).replace(" ", "") not in r.text


async def test_a_number_of_the_wrong_type_is_refused_without_echoing_it(vault):
    async with vault.client() as c:
        r = await c.post(
            "/v1/cards", json={"number": 4111111111111111, "exp_month": 1, "exp_year": 2099}
        )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "number"
    assert VISA_DIGITS not in r.text


async def test_another_tenants_token_is_not_found(vault):
    token = (await vault.tokenize(tenant="ten_a")).json()["id"]
    async with vault.client(tenant="ten_a") as c:
        assert (await c.get(f"/v1/cards/{token}")).status_code == 200
    async with vault.client(tenant="ten_b") as c:
        r = await c.get(f"/v1/cards/{token}")
    assert r.status_code == 404 and r.json()["type"].endswith("/card-not-found")
    async with vault.executor(scopes=("cards:verify",)) as c:
        assert (await c.get(f"/internal/v1/tenants/ten_a/cards/{token}")).status_code == 200
        assert (await c.get(f"/internal/v1/tenants/ten_b/cards/{token}")).status_code == 404
    async with vault.executor() as c:
        r = await c.post(
            f"/internal/v1/tenants/ten_b/cards/{token}/detokenize",
            json={"purpose": "rail_submission", "reference": "CWREF1"},
        )
    assert r.status_code == 404 and VISA_DIGITS not in r.text


async def test_detokenization_needs_its_scope_and_every_use_is_audited(vault, vault_events):
    token = (await vault.tokenize()).json()["id"]
    path = f"/internal/v1/tenants/ten_a/cards/{token}/detokenize"
    body = {"purpose": "rail_submission", "reference": "CWREF42"}
    for scopes in (("cards:tokenize",), ("cards:verify",)):
        async with vault.client(scopes=scopes, client_id="cli_nosy") as c:
            r = await c.post(path, json=body)
        assert r.status_code == 403, r.text
        assert r.json()["missing_scopes"] == ["cards:detokenize"]
        assert VISA_DIGITS not in r.text
    async with vault.executor() as c:
        r = await c.post(path, json=body)
        assert r.status_code == 200, r.text
        assert r.json()["number"] == VISA_DIGITS and r.json()["exp_year"] == 2099
        assert (await c.post(path, json={**body, "purpose": "curiosity"})).status_code == 422

    async def audited():
        events = await vault_events()
        kinds = [e.type for e in events]
        return (
            events
            if kinds.count("vault.detokenize_refused") == 2 and ("vault.card_detokenized" in kinds)
            else None
        )

    events = await eventually(audited, timeout=60)
    [used] = [e for e in events if e.type == "vault.card_detokenized"]
    assert used.tenant == "ten_a" and used.data["token"] == token
    assert used.data["reference"] == "CWREF42" and used.data["purpose"] == "rail_submission"
    assert used.data["actor"]["client_id"] == "clearway-transfer" and used.data["use"] == 1
    refused = [e for e in events if e.type == "vault.detokenize_refused"]
    assert {e.data["actor"]["client_id"] for e in refused} == {"cli_nosy"}
    assert {(e.data["reason"], e.data["token"], e.tenant) for e in refused} == {
        ("insufficient_scope", token, "ten_a")
    }
    [made] = [e for e in events if e.type == "vault.card_tokenized"]
    assert made.data["last4"] == "1111" and made.tenant == "ten_a"
    for e in events:
        assert VISA_DIGITS not in str(e.data)


def _pg_dump() -> str:
    found = shutil.which("pg_dump") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))), None
    )
    assert found, "pg_dump not found"
    return str(found)


async def test_the_card_number_is_in_no_table_in_clear(vault, platform):
    amex = "378282246310005"
    await vault.tokenize(holder_name="Grace Hopper")
    await vault.tokenize(number=amex, tenant="ten_b")
    dump = subprocess.run(
        [_pg_dump(), "--no-owner", platform.database_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CREATE TABLE vault.cards" in dump
    for digits in (VISA_DIGITS, amex):
        for text in (digits, digits.encode().hex(), "Grace Hopper", b"Grace Hopper".hex()):
            assert text not in dump


async def test_an_offboarded_tenants_cards_are_shredded_and_others_still_work(vault, platform):
    """Crypto-shredding (ADR 0027): once ten_a's data keys are destroyed its cards are
    unreadable and it cannot tokenize; ten_b's cards detokenize as before."""
    a = (await vault.tokenize("ten_a")).json()["id"]
    b = (await vault.tokenize("ten_b")).json()["id"]
    state = vault.app.state.vault
    async with state.pool.acquire() as conn:
        sealed = await conn.fetchval("SELECT sealed FROM cards WHERE token = $1", a)
        assert sealed[:4] == b"CWE\x03"  # bound to the tenant's key
        destroyed = await shred_tenant(
            conn, "vault", state.events, tenant="ten_a", reason="contract ended"
        )
        assert destroyed == 1
    await state.tenant_keys.refresh()  # the Supervisor job, without waiting for it
    body = {"purpose": "rail_submission", "reference": "CWREF43"}
    async with vault.executor() as c:
        r = await c.post(f"/internal/v1/tenants/ten_a/cards/{a}/detokenize", json=body)
        assert r.status_code == 403 and r.json()["type"].endswith("tenant-offboarded"), r.text
        assert VISA_DIGITS not in r.text
        r = await c.post(f"/internal/v1/tenants/ten_b/cards/{b}/detokenize", json=body)
        assert r.status_code == 200 and r.json()["number"] == VISA_DIGITS
    r = await vault.tokenize("ten_a", number="5555 5555 5555 4444")
    assert r.status_code == 403 and r.json()["type"].endswith("tenant-offboarded"), r.text
    with pytest.raises(RecordUnreadable, match="destroyed"):
        state.envelope.open(sealed, Context("vault", "cards", "sealed", a, "ten_a"))


async def test_cards_unused_past_their_retention_are_purged_and_the_purge_audited(
    vault, vault_events
):
    """Retention as data (docs/design.md §9): the rule of ``vault_cards`` in the vault's
    own table decides; an operator's override is kept when the service seeds again."""
    old = (await vault.tokenize("ten_a")).json()["id"]
    recent = (await vault.tokenize("ten_a", number="5555 5555 5555 4444")).json()["id"]
    state, records = vault.app.state.vault, vault.app.state.records
    async with state.pool.acquire() as conn:
        await conn.execute(
            "UPDATE cards SET created_at = now() - interval '40 days' WHERE token = $1", old
        )
        await conn.execute(
            "UPDATE retention_rules SET retention = interval '30 days', overridden = true,"
            " overridden_by = 'alice', reason = 'shorter by contract'"
            " WHERE record_class = 'vault_cards'"
        )
        await records.seed(conn)  # a restart: the override stays
    assert await records.purge(state.pool) == {"vault_cards": 1}
    assert await records.purge(state.pool) == {"vault_cards": 0}
    async with vault.client(tenant="ten_a") as c:
        assert (await c.get(f"/v1/cards/{old}")).status_code == 404
        assert (await c.get(f"/v1/cards/{recent}")).status_code == 200

    async def purged():
        return [e for e in await vault_events() if e.type == "platform.records_purged"] or None

    [event] = await eventually(purged)
    assert event.data["record_class"] == "vault_cards" and event.data["count"] == 1
    assert event.data["retention_days"] == 30 and event.data["service"] == "vault"
