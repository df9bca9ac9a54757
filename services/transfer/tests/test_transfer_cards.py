"""Paying with a card token: the vault checks the token when the transfer is created,
the executor detokenizes it for the rail, and the card number is nowhere but inside
the vault's ciphertext (docs/design.md §9)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import asyncpg
import httpx
import pytest

from clearway.shared.testing.helpers import eventually
from clearway.vault.bootstrap import AUDIENCE as VAULT_AUDIENCE

pytestmark = pytest.mark.integration

VISA = "4111111111111111"


def _pg_dump() -> str:
    found = shutil.which("pg_dump") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))), None
    )
    assert found, "pg_dump not found"
    return str(found)


async def test_tokenize_then_pay_with_the_token_and_the_rail_charge_settles(
    clearway, body, platform, published
):
    tokenized = await clearway.tokenize("4111 1111 1111 1111")
    assert tokenized.status_code == 201, tokenized.text
    token = tokenized.json()["id"]
    r = await clearway.post("card-pay-1", {**body, "source": token})
    assert r.status_code == 201, r.text
    transfer = r.json()

    async def settled():
        found = await clearway.statuses()
        return found.get(transfer["id"]) == "settled"

    await eventually(settled, timeout=60)
    charge = (await clearway.rail("GET", f"/v1/charges/{transfer['reference']}")).json()
    assert charge["source"] == token and charge["card"] == {"brand": "visa", "last4": "1111"}

    async def audited():
        events = await published("clearway.vault.events.v1")
        return [e for e in events if e.type == "vault.card_detokenized"]

    # one detokenization per charge attempt: a rail call retried under load is a
    # second, audited use of the same card for the same transfer, never another's
    uses = await eventually(audited, timeout=60)
    assert uses and {u.data["reference"] for u in uses} == {transfer["reference"]}
    assert {(u.tenant, u.data["actor"]["client_id"]) for u in uses} == {
        ("ten_a", "clearway-transfer")
    }

    dump = subprocess.run(
        [_pg_dump(), "--no-owner", platform.database_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CREATE TABLE vault.cards" in dump and "CREATE TABLE rail.charges" in dump
    assert VISA not in dump and VISA.encode().hex() not in dump
    for topic in ("clearway.transfer.events.v1", "clearway.vault.events.v1"):
        for event in await published(topic):
            assert VISA not in str(event.data)


async def test_an_unknown_or_foreign_card_token_is_a_422_naming_source(clearway, body):
    foreign = (await clearway.tokenize(VISA, tenant="ten_b")).json()["id"]
    for i, token in enumerate((foreign, "tok_" + "Z" * 24)):
        r = await clearway.post(f"card-unknown-{i}", {**body, "source": token})
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["source"]
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 0


async def test_with_the_vault_down_a_card_transfer_is_a_503_and_nothing_is_created(
    start_services, body
):
    async with start_services(vault_urls={"eu": "http://127.0.0.1:9"}) as cw:
        r = await cw.post("card-down-1", {**body, "source": "tok_" + "A" * 24})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"]
        assert await cw.count("SELECT count(*) FROM transfer.transfers") == 0
        ok = await cw.post("card-down-2", body)  # account sources do not need the vault
        assert ok.status_code == 201, ok.text


async def test_a_us_tenants_card_lives_in_the_us_vault_and_pays_through_it(
    start_services, other_region_dsn, body, eventually
):
    """Residency (docs/design.md §9): ``ten_b`` lives in ``us``; its card is tokenized
    at the us vault, checked and detokenized there by the (global) transfer service,
    and only the token and ids land in the eu database."""
    async with start_services(us_database=other_region_dsn) as cw:
        in_eu = await cw.tokenize(VISA, tenant="ten_a")  # served by the eu vault
        assert in_eu.status_code == 201, in_eu.text
        tokenized = await cw.tokenize(VISA, tenant="ten_b")
        assert tokenized.status_code == 201, tokenized.text
        token = tokenized.json()["id"]
        r = await cw.post("card-us-1", {**body, "source": token}, tenant="ten_b")
        assert r.status_code == 201, r.text
        transfer = r.json()

        async def settled():
            return (await cw.statuses()).get(transfer["id"]) == "settled"

        await eventually(settled, timeout=60)
        charge = (await cw.rail("GET", f"/v1/charges/{transfer['reference']}")).json()
        assert charge["source"] == token and charge["card"]["last4"] == "1111"

        # the eu vault does not serve ten_b: a 421 naming us, as the transfer would get
        # with a stale region map (it then answers 503, never "unknown card")
        async with httpx.AsyncClient(base_url=cw.vault_urls["eu"]) as c:
            wrong = await c.get(
                f"/internal/v1/tenants/ten_b/cards/{token}",
                headers={"Authorization": f"Bearer {_verify_token(cw)}"},
            )
        assert wrong.status_code == 421 and wrong.json()["region"] == "us"

        eu_cards = await cw.db.fetch("SELECT tenant FROM vault.cards")
        assert [c["tenant"] for c in eu_cards] == ["ten_a"]
        us = await asyncpg.connect(other_region_dsn)
        try:
            us_cards = await us.fetch("SELECT token, tenant FROM vault.cards")
        finally:
            await us.close()
        assert [(c["token"], c["tenant"]) for c in us_cards] == [(token, "ten_b")]


def _verify_token(cw) -> str:
    return cw.issuer.token(
        sub="clearway-transfer",
        client_id="clearway-transfer",
        scopes=["cards:verify"],
        audience=VAULT_AUDIENCE,
        tenant="tnt_platform",
    )
