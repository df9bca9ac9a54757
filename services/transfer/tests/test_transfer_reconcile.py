"""Reconciliation of the rail's settlement report against transfers, by reference."""

from __future__ import annotations

import asyncio

import pytest

from clearway.transfer.events import EVENTS_TOPIC
from clearway.transfer.handlers import reconcile_settlements
from clearway.transfer.reconciliation import compare

pytestmark = pytest.mark.integration


def test_matching_by_reference_names_every_kind_of_break():
    ours = {
        "A": {"id": "tr_a", "amount": 1, "currency": "EUR"},
        "B": {"id": "tr_b", "amount": 2, "currency": "EUR"},
        "C": {"id": "tr_c", "amount": 3, "currency": "EUR"},
    }
    rail = {
        "A": {"charge_id": "ch_a", "amount": 1, "currency": "EUR"},
        "C": {"charge_id": "ch_c", "amount": 3, "currency": "GBP"},
        "D": {"charge_id": "ch_d", "amount": 4, "currency": "EUR"},
    }
    report = compare(ours, rail, "rec_1")
    assert report.matched == 1
    assert {(b["reference"], b["kind"]) for b in report.breaks} == {
        ("B", "missing_at_rail"),
        ("C", "mismatch"),
        ("D", "unexpected_at_rail"),
    }
    assert "missing at rail     1" in report.render()


async def _settled(clearway, n):
    return list((await clearway.statuses()).values()).count("settled") == n


async def test_reconciliation_flags_an_extra_rail_charge_and_a_missing_one(
    clearway, platform, body, eventually
):
    refs = []
    for i in range(3):
        refs.append((await clearway.post(f"rec-{i}", {**body, "amount": 10 + i})).json())
    await eventually(lambda: _settled(clearway, 3))
    extra = {
        "reference": "CWEXTRA0001",
        "amount": 777,
        "currency": "EUR",
        "source": "acct_x",
        "destination": "acct_y",
    }
    assert (await clearway.rail("POST", "/v1/charges", json=extra)).status_code == 201
    gone = refs[1]["reference"]
    assert (await clearway.rail("DELETE", f"/v1/charges/{gone}")).status_code == 204

    core = clearway.app.state.core
    rail = clearway.rail_client("rail:settlements")
    try:
        report = await reconcile_settlements(core, rail)
    finally:
        await rail.close()
    assert report.matched == 2
    assert {(b["reference"], b["kind"]) for b in report.breaks} == {
        ("CWEXTRA0001", "unexpected_at_rail"),
        (gone, "missing_at_rail"),
    }
    assert (
        await clearway.count(
            "SELECT count(*) FROM transfer.reconciliation_items WHERE run_id=$1", report.run_id
        )
        == 2
    )
    assert core.events.topic.endswith(EVENTS_TOPIC)
    text = report.render()
    assert "unexpected at rail  1" in text and gone in text

    # the same through the CLI, as an operator runs it
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "CLEARWAY_DATABASE_URL": platform.database_url,
        "CLEARWAY_TRANSFER_RAIL_URL": clearway.rail_url,
        "CLEARWAY_OAUTH_ISSUER": clearway.settings.issuer,
        "CLEARWAY_TRANSFER_TOKEN_URL": clearway.settings.token_url,
        "CLEARWAY_TRANSFER_CLIENT_SECRET": clearway.settings.client_secret.get_secret_value(),
        "CLEARWAY_TOPIC_PREFIX": platform.topic_prefix,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "clearway.transfer.reconcile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "missing at rail     1" in done.stdout and "CWEXTRA0001" in done.stdout
    assert await clearway.count("SELECT count(*) FROM transfer.reconciliation_runs") == 2
