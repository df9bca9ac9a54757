"""Test mode takes the live code path but for the rail (docs/design.md §10)."""

from __future__ import annotations

import pytest

from clearway.shared.mode import Mode
from clearway.shared.settings import PlatformSettings, SettingsError
from clearway.transfer.rail_client import RailClient, Rails
from clearway.transfer.settings import TransferSettings


async def test_a_sandbox_twins_transfer_goes_to_the_sandbox_rail_and_a_live_one_to_the_live_rail():
    live, sandbox = RailClient("http://live.rail"), RailClient("http://sandbox.rail")
    rails = Rails(live, sandbox)
    try:
        assert rails.for_tenant("tnt_acme") is live
        assert rails.for_tenant("tnt_acme_test") is sandbox
    finally:
        await rails.close()


def test_reconciling_a_rail_compares_the_transfers_of_the_modes_it_carries():
    apart = TransferSettings(rail_url="http://bank", sandbox_rail_url="http://sandbox/")
    assert apart.rail_url_for(Mode.TEST) == "http://sandbox/"
    assert apart.modes_on_rail("http://bank") == (Mode.LIVE,)
    assert apart.modes_on_rail("http://sandbox") == (Mode.TEST,)
    one = TransferSettings(rail_url="http://sandbox", sandbox_rail_url="http://sandbox")
    assert one.modes_on_rail("http://sandbox") == (Mode.LIVE, Mode.TEST)


def test_production_refuses_to_send_test_mode_transfers_to_the_live_rail():
    with pytest.raises(SettingsError) as refused:
        TransferSettings.from_env(
            {},
            platform=PlatformSettings(env="production"),
            rail_url="https://bank.example",
            sandbox_rail_url="https://bank.example/",
            reference_secret="A" * 44,
        )
    # named beside every other production refusal, not instead of them
    assert "is the live rail" in refused.value.problems["CLEARWAY_TRANSFER_SANDBOX_RAIL_URL"]
    assert "CLEARWAY_TRANSFER_HSM_PIN" in refused.value.problems
