"""The reference key is never built in (docs/design.md §9): in development it is
generated once in the development keyring directory, in production it must be set."""

from __future__ import annotations

import pytest

from clearway.shared.settings import SettingsError
from clearway.transfer.domain import reference_for
from clearway.transfer.settings import TransferSettings

pytestmark = pytest.mark.integration

VAR = "CLEARWAY_TRANSFER_REFERENCE_SECRET"


async def test_two_development_starts_with_one_keyring_derive_the_same_reference(
    start_services, platform, body, tmp_path
):
    keyring = tmp_path / "a"  # the services' local directory: the keyring is keys/ in it
    async with start_services(local_dir=keyring) as first:
        response = await first.post("ref-key-1", body)
        assert response.status_code == 201, response.text
        reference = response.json()["reference"]
        first_key = first.app.state.core.reference_secret
    async with start_services(local_dir=keyring) as second:
        again = second.app.state.core.reference_secret
    assert again == first_key
    assert reference_for(again, "ten_a", "cli_mobile", "ref-key-1") == reference
    # another keyring directory: another key, so nothing about it is built in
    other = TransferSettings(platform=platform.replace(local_dir=tmp_path / "b"))
    assert other.reference_key() != first_key
    assert (tmp_path / "a" / "keys" / "transfer-reference.secret").stat().st_mode & 0o077 == 0


def test_production_without_the_reference_key_refuses_to_start(tmp_path):
    env = {"CLEARWAY_ENV": "production", "CLEARWAY_LOCAL_DIR": str(tmp_path)}
    with pytest.raises(SettingsError) as refused:
        TransferSettings.from_env(env)
    assert VAR in refused.value.problems
    settings = TransferSettings(platform=TransferSettings().platform.replace(env="production"))
    with pytest.raises(SettingsError, match=VAR):
        settings.reference_key()
    assert not (tmp_path / "keys").exists(), "production never generates a development key"
