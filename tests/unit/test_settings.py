"""The settings base: naming scheme, validation naming the variable, secrets never printed,
keyword construction independent of the environment."""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
from typing import ClassVar

import pytest
from pydantic import SecretStr, ValidationError

from clearway.shared.settings import (
    Base64Secret,
    Csv,
    PlatformSettings,
    ServiceSettings,
    SettingsError,
    internal,
)
from clearway.shared.settings_doc import registered

KEY = b"k" * 32


class DemoSettings(ServiceSettings):
    service: ClassVar[str] = "demo"

    port: int = 8009
    db_password: SecretStr = SecretStr("demo-dev")
    key: Base64Secret = b"development-key"
    """A key."""
    delays: Csv[tuple[float, ...]] = (1.0, 2.0)
    enabled: bool = True
    fixture: dict[str, str] | None = internal()


def test_platform_fields_are_clearway_field_and_service_fields_are_clearway_svc_field():
    s = DemoSettings.from_env(
        {
            "CLEARWAY_DATABASE_URL": "postgresql://db/x",
            "CLEARWAY_TOPIC_PREFIX": "t1.",
            "CLEARWAY_DEMO_PORT": "9001",
            "CLEARWAY_DEMO_DELAYS": "0, 0.5,3",
            "CLEARWAY_DEMO_ENABLED": "0",
            "CLEARWAY_DEMO_KEY": base64.b64encode(KEY).decode(),
            # another service's and the old unprefixed names are not this service's
            "CLEARWAY_PORT": "1",
            "CLEARWAY_OTHER_PORT": "2",
        }
    )
    assert s.platform.database_url == "postgresql://db/x"
    assert s.platform.topic("a") == "t1.a"
    assert (s.port, s.delays, s.enabled) == (9001, (0.0, 0.5, 3.0), False)
    assert s.key.get_secret_value() == KEY
    assert [var for _, var, _ in DemoSettings.env_fields()] == [
        "CLEARWAY_DEMO_HOST",
        "CLEARWAY_DEMO_PORT",
        "CLEARWAY_DEMO_HTTP_WORKERS",
        "CLEARWAY_DEMO_DB_PASSWORD",
        "CLEARWAY_DEMO_CURSOR_KEY",
        "CLEARWAY_DEMO_KAFKA_USERNAME",
        "CLEARWAY_DEMO_KAFKA_PASSWORD",
        "CLEARWAY_DEMO_KEY",
        "CLEARWAY_DEMO_DELAYS",
        "CLEARWAY_DEMO_ENABLED",
    ]


def test_internal_fields_are_never_read_from_the_environment():
    s = DemoSettings.from_env({"CLEARWAY_DEMO_FIXTURE": '{"a": "b"}'})
    assert s.fixture is None


def test_keyword_construction_never_reads_the_environment(monkeypatch):
    monkeypatch.setenv("CLEARWAY_DEMO_PORT", "9002")
    monkeypatch.setenv("CLEARWAY_TOPIC_PREFIX", "leak.")
    monkeypatch.setenv("CLEARWAY_DEMO_DB_PASSWORD", "from-env")
    s = DemoSettings(enabled=False)
    assert (s.port, s.platform.topic_prefix, s.enabled) == (8009, "", False)
    assert s.db_password.get_secret_value() == "demo-dev"
    assert PlatformSettings().topic_prefix == ""
    # from_env reads it, and keyword arguments still win
    assert DemoSettings.from_env().port == 9002
    assert DemoSettings.from_env(port=1).port == 1


def test_keyword_construction_validates_and_rejects_unknown_fields():
    with pytest.raises(ValidationError):
        DemoSettings(port="not a port")
    with pytest.raises(ValidationError):
        DemoSettings(prot=1)  # a typo is an error, not a silent default
    s = DemoSettings(key=KEY)
    assert s.replace(port=5).key.get_secret_value() == KEY
    with pytest.raises(ValidationError):
        s.replace(port="x")


def test_an_invalid_value_raises_an_error_naming_every_variable_at_fault():
    with pytest.raises(SettingsError) as e:
        DemoSettings.from_env(
            {
                "CLEARWAY_DEMO_PORT": "eighty",
                "CLEARWAY_DEMO_ENABLED": "perhaps",
                "CLEARWAY_DEMO_KEY": "%%%not-base64%%%",
                "CLEARWAY_DEMO_DELAYS": "1,soon",
                "CLEARWAY_ENV": "staging",
            }
        )
    assert set(e.value.problems) == {
        "CLEARWAY_DEMO_PORT",
        "CLEARWAY_DEMO_ENABLED",
        "CLEARWAY_DEMO_KEY",
        "CLEARWAY_DEMO_DELAYS",
        "CLEARWAY_ENV",
    }
    text = str(e.value)
    assert "CLEARWAY_DEMO_PORT: must be an integer" in text
    assert "CLEARWAY_DEMO_KEY: must be base64" in text
    assert "not-base64" not in text  # the (possibly secret) input is never echoed


def test_secrets_never_appear_in_repr_str_or_logs(caplog):
    s = DemoSettings.from_env(
        {
            "CLEARWAY_DEMO_DB_PASSWORD": "hunter2-password",
            "CLEARWAY_DEMO_KEY": base64.b64encode(KEY).decode(),
            "CLEARWAY_DATABASE_URL": "postgresql://admin:s3cr3t-admin@db:5432/x",
        }
    )
    logging.getLogger("test").warning("settings: %s / %r", s, s)
    for text in (repr(s), str(s), caplog.text):
        assert "hunter2-password" not in text
        assert KEY.decode() not in text
        assert "s3cr3t-admin" not in text
    assert "db:5432" in repr(s)  # the rest of the DSN stays visible


def test_development_secrets_warn_outside_production_and_stop_it(caplog):
    with caplog.at_level(logging.WARNING, "clearway.shared.settings"):
        DemoSettings.from_env({})
    assert "CLEARWAY_DEMO_KEY not set" in caplog.text
    with pytest.raises(SettingsError) as e:
        DemoSettings.from_env({"CLEARWAY_ENV": "production", "CLEARWAY_DEMO_KEY": "eHl6"})
    assert list(e.value.problems) == [
        "CLEARWAY_DEMO_DB_PASSWORD",
        "CLEARWAY_DEMO_CURSOR_KEY",
        "CLEARWAY_DEMO_KAFKA_PASSWORD",
        "CLEARWAY_KAFKA_SECURITY_PROTOCOL",
    ]
    assert "required in production" in str(e.value)
    # every value set: only the static database password is left, refused in
    # production whatever its value (docs/design.md §9: logins rotate there)
    with pytest.raises(SettingsError) as e:
        DemoSettings.from_env(
            {
                "CLEARWAY_ENV": "production",
                "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CLEARWAY_DEMO_KEY": "eHl6",
                "CLEARWAY_DEMO_DB_PASSWORD": "pw",
                "CLEARWAY_DEMO_CURSOR_KEY": base64.b64encode(b"k" * 32).decode(),
                "CLEARWAY_DEMO_KAFKA_PASSWORD": "kpw",
            }
        )
    assert list(e.value.problems) == ["CLEARWAY_DEMO_DB_PASSWORD"]
    assert "static database password" in str(e.value)


def test_from_env_or_exit_ends_with_the_message_and_status_2(capsys):
    with pytest.raises(SystemExit) as e:
        DemoSettings.from_env_or_exit({"CLEARWAY_DEMO_PORT": "x"})
    assert e.value.code == 2
    assert "CLEARWAY_DEMO_PORT: must be an integer" in capsys.readouterr().err


def test_a_service_started_with_a_bad_variable_exits_with_its_name_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "clearway.transfer"],
        env={"CLEARWAY_TRANSFER_PORT": "eighty", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "CLEARWAY_TRANSFER_PORT: must be an integer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_service_follows_the_naming_scheme_without_collisions():
    classes = registered()
    assert {c.service for c in classes} == {
        "transfer",
        "webhooks",
        "consent",
        "audit",
        "rail",
        "vault",
        "console",
        "drill",  # the breach drill's command-line settings
    }
    seen = {var for _, var, _ in PlatformSettings.env_fields()}
    for cls in classes:
        for _, var, _ in cls.env_fields():
            assert var.startswith(f"CLEARWAY_{cls.service.upper()}_"), var
            assert var not in seen, var
            seen.add(var)
        cls()  # constructible from defaults alone (tests and `make run`)
