"""Kafka as guarded as HTTP: each service's own login from settings, production refusing
an unauthenticated link, and the ACL plan of least privilege (docs/design.md §9)."""

from __future__ import annotations

import ssl
from typing import ClassVar

import pytest
from pydantic import SecretStr

from clearway.shared.kafka_acl import Operation, Pattern, Permission, Resource, platform_acls
from clearway.shared.kafka_link import KafkaLink, KafkaLogin
from clearway.shared.settings import ServiceSettings, SettingsError


class PaySettings(ServiceSettings):
    service: ClassVar[str] = "pay"

    db_password: SecretStr = SecretStr("pay-dev")


class OfflineSettings(ServiceSettings):
    service: ClassVar[str] = "offline"
    uses_kafka: ClassVar[bool] = False


SASL = {"CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}


def test_a_service_logs_in_as_its_own_principal():
    s = PaySettings.from_env({**SASL, "CLEARWAY_PAY_KAFKA_PASSWORD": "pw"})
    options = s.kafka.client_options()
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "clearway-pay",
        "pw",
    )
    named = PaySettings.from_env(
        {**SASL, "CLEARWAY_PAY_KAFKA_PASSWORD": "pw", "CLEARWAY_PAY_KAFKA_USERNAME": "pay-eu"}
    )
    assert named.kafka.client_options()["sasl_plain_username"] == "pay-eu"
    assert "pw" not in repr(s.kafka)


def test_plaintext_makes_no_login_and_needs_no_password():
    s = PaySettings.from_env({"CLEARWAY_PAY_KAFKA_PASSWORD": "pw"})
    assert s.kafka.client_options() == {
        "bootstrap_servers": "127.0.0.1:59092",
        "security_protocol": "PLAINTEXT",
    }
    assert "CLEARWAY_PAY_KAFKA_PASSWORD" not in PaySettings().development_secrets()


def test_an_authenticated_link_without_a_login_is_refused_before_connecting():
    with pytest.raises(ValueError, match="needs a login"):
        PaySettings.from_env(SASL).kafka.client_options()


def test_sasl_ssl_verifies_the_broker_and_requires_tls_1_2():
    link = KafkaLink("b:9093", "SASL_SSL", login=KafkaLogin("u", "p"))
    ctx = link.client_options()["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_production_refuses_plaintext_and_a_missing_kafka_password():
    with pytest.raises(SettingsError) as e:
        PaySettings.from_env({"CLEARWAY_ENV": "production", "CLEARWAY_PAY_DB_PASSWORD": "x"})
    assert "CLEARWAY_KAFKA_SECURITY_PROTOCOL" in e.value.problems
    assert "CLEARWAY_PAY_KAFKA_PASSWORD" in e.value.problems
    # with a secured link, only the static database password is left (§9: it rotates)
    with pytest.raises(SettingsError) as e:
        PaySettings.from_env(
            {
                "CLEARWAY_ENV": "production",
                "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CLEARWAY_PAY_DB_PASSWORD": "x",
                "CLEARWAY_PAY_KAFKA_PASSWORD": "y",
                "CLEARWAY_PAY_CURSOR_KEY": "a" * 44,
            }
        )
    assert list(e.value.problems) == ["CLEARWAY_PAY_DB_PASSWORD"]
    link = PaySettings.from_env(
        {"CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CLEARWAY_PAY_KAFKA_PASSWORD": "y"}
    ).kafka
    assert link.encrypted


def test_a_service_without_kafka_has_no_kafka_login_to_configure():
    names = [var for _, var, _ in OfflineSettings.env_fields()]
    assert not [n for n in names if "KAFKA" in n]
    with pytest.raises(SettingsError) as e:
        OfflineSettings.from_env({"CLEARWAY_ENV": "production"})
    assert "CLEARWAY_KAFKA_SECURITY_PROTOCOL" not in e.value.problems


def _allowed(acls, who: str, op: Operation, topic: str) -> bool:
    """What the StandardAuthorizer decides for ``who``: a matching DENY wins."""

    def matches(a):
        if a.principal != who or a.resource != Resource.TOPIC or a.operation != op:
            return False
        return topic == a.name if a.pattern == Pattern.LITERAL else topic.startswith(a.name)

    found = [a for a in acls if matches(a)]
    return bool(found) and all(a.permission == Permission.ALLOW for a in found)


def test_the_acl_plan_is_least_privilege():
    acls = platform_acls("p.")
    intents, transfer = "p.clearway.transfer.intents.v1", "p.clearway.transfer.events.v1"
    w = Operation.WRITE
    assert _allowed(acls, "clearway-transfer", w, transfer)
    assert _allowed(acls, "clearway-transfer", w, f"{intents}.transfer-intents.dlt")
    for who in ("clearway-webhooks", "clearway-audit", "clearway-consent"):
        assert not _allowed(acls, who, w, transfer), who
        assert not _allowed(acls, who, w, intents), who
        assert not _allowed(acls, who, Operation.READ, intents), who
    assert not _allowed(acls, "clearway-transfer", w, intents)
    assert _allowed(acls, "clearway-initiator", w, intents)
    assert _allowed(acls, "clearway-webhooks", Operation.READ, transfer)
    assert _allowed(acls, "clearway-webhooks", w, f"{transfer}.p.webhooks.dlt")
    assert not _allowed(acls, "clearway-webhooks", w, "p.clearway.consent.events.v2")
    assert not _allowed(acls, "clearway-transfer", w, "q.clearway.transfer.events.v1")
