"""Production refuses the development identity's demo seed (docs/design.md §9)."""

from __future__ import annotations

import pytest

from clearway.consent.settings import ConsentSettings
from clearway.shared.settings import SettingsError


def test_production_refuses_the_demo_seed_naming_it():
    env = {"CLEARWAY_ENV": "production", "CLEARWAY_CONSENT_SEED_DEMO": "1"}
    with pytest.raises(SettingsError) as refused:
        ConsentSettings.from_env(env)
    assert "CLEARWAY_CONSENT_SEED_DEMO" in refused.value.problems
    assert "CLEARWAY_CONSENT_HSM_PIN" in refused.value.problems  # the others still named
    assert ConsentSettings.from_env({"CLEARWAY_CONSENT_SEED_DEMO": "1"}).seed_demo
