"""``CLEARWAY_ENV=production`` without keys: every service refuses to start.

Each service is started as an operator would, ``python -m clearway.<pkg>``, with
only the platform's infrastructure configured. It must exit non-zero before
touching anything, naming every secret it lacks (docs/design.md §9): its
database credentials, its keys and, for the transfer service, the client secret
of its rail tokens.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from clearway.shared.settings import ServiceSettings, is_secret

pytestmark = pytest.mark.integration

#: package → (settings class, variables that must be named whatever else changes)
SERVICES: dict[str, tuple[str, set[str]]] = {
    "transfer": (
        "clearway.transfer.settings:TransferSettings",
        {
            "CLEARWAY_TRANSFER_CLIENT_SECRET",
            "CLEARWAY_TRANSFER_REFERENCE_SECRET",
            "CLEARWAY_TRANSFER_HSM_PIN",
        },
    ),
    "webhooks": ("clearway.webhooks.settings:WebhooksSettings", {"CLEARWAY_WEBHOOKS_HSM_PIN"}),
    "consent": ("clearway.consent.settings:ConsentSettings", {"CLEARWAY_CONSENT_HSM_PIN"}),
    "audit": (
        "clearway.audit.settings:AuditSettings",
        {"CLEARWAY_AUDIT_HSM_PIN", "CLEARWAY_AUDIT_SIGNER_DB_PASSWORD"},
    ),
    "rail": ("clearway.rail.settings:RailSettings", {"CLEARWAY_RAIL_HSM_PIN"}),
    "vault": ("clearway.vault.settings:VaultSettings", {"CLEARWAY_VAULT_HSM_PIN"}),
}


def settings_class(path: str) -> type[ServiceSettings]:
    module, name = path.split(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, ServiceSettings)
    return cls


@pytest.mark.parametrize("pkg", sorted(SERVICES))
def test_a_service_started_in_production_without_its_secrets_exits_naming_them(pkg):
    path, named = SERVICES[pkg]
    cls = settings_class(path)
    # every secret the service reads, whatever its type, plus the ones named above; the
    # reader login's password is read only by a service that does not migrate (below)
    reader = cls.env_name("db_reader_password")
    secrets = {var for _, var, field in cls.env_fields() if is_secret(field)} - {reader} | named
    assert secrets, "a service with no secret at all is not configured for production"
    named_lines = refused(pkg)
    missing = secrets - named_lines
    assert not missing, f"not named: {sorted(missing)}"


@pytest.mark.parametrize("pkg", sorted(SERVICES))
def test_with_rotated_logins_no_service_asks_for_a_database_password(pkg):
    """Every service can run in production without a static database password: with
    ``DB_LOGINS=rotated`` its passwords (audit: of its signer role too) rotate, sealed
    with its KEK (docs/design.md §9), and are no longer named."""
    cls = settings_class(SERVICES[pkg][0])
    named_lines = refused(pkg, {cls.env_name("db_logins"): "rotated"})
    passwords = {v for _, v, _ in cls.env_fields() if v.endswith("DB_PASSWORD")}
    assert passwords, pkg
    assert not passwords & named_lines, sorted(passwords & named_lines)
    assert cls.env_name("hsm_pin") in named_lines  # the KEK that seals them is required
    # one that does not migrate (no admin login, ADR 0044) reads them with its reader login
    reading = refused(
        pkg, {cls.env_name("db_logins"): "rotated", "CLEARWAY_MIGRATE_AT_START": "false"}
    )
    assert cls.env_name("db_reader_password") in reading


def refused(pkg: str, extra: dict[str, str] | None = None) -> set[str]:
    """Start ``python -m clearway.<pkg>`` in production with only the infrastructure
    (and ``extra``) configured; it must exit 2: returns the variables it names."""
    env = {
        # nothing from the developer's shell may leak in: only what a process needs
        **{k: v for k, v in os.environ.items() if not k.startswith("CLEARWAY_")},
        "CLEARWAY_ENV": "production",
        # unreachable on purpose: refusing must happen before any connection
        "CLEARWAY_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/clearway",
        "CLEARWAY_KAFKA_BOOTSTRAP": "127.0.0.1:9",
        **(extra or {}),
    }
    done = subprocess.run(
        [sys.executable, "-m", f"clearway.{pkg}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "invalid configuration" in done.stderr
    assert "Traceback" not in done.stderr
    return {line.split(":")[0] for line in done.stderr.splitlines()}


def test_the_console_started_in_production_without_its_secret_or_https_exits_naming_them():
    """The console has no database and no broker (nothing of theirs to name), but it
    needs its OAuth client secret and an https origin for its Secure cookie."""
    named_lines = refused("console")
    assert {"CLEARWAY_CONSOLE_CLIENT_SECRET", "CLEARWAY_CONSOLE_PUBLIC_URL"} <= named_lines
    assert not {v for v in named_lines if v.endswith(("DB_PASSWORD", "KAFKA_PASSWORD"))}
