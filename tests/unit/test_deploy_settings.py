"""Settings of a real deployment (docs/design.md §12, ADR 0044): the topic layout,
Kafka over TLS with a client certificate or a managed cluster's PLAIN login, and
services told not to migrate or create topics at start."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.security import BaseSecurity, SASLPlaintext

from clearway.shared.events import events_topic
from clearway.shared.kafka import _security
from clearway.shared.kafka_link import INTENTS_TOPIC, KafkaLink, KafkaLogin, TopicLayout
from clearway.shared.provision import platform_topics
from clearway.shared.settings import PlatformSettings, ServiceSettings, SettingsError


class PaySettings(ServiceSettings):
    service: ClassVar[str] = "pay"


def _client_cert(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clearway-pay")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_the_topic_layout_comes_from_settings():
    assert PlatformSettings().topic_layout == TopicLayout(3, 1, None, (INTENTS_TOPIC,))
    layout = PlatformSettings.from_env(
        {
            "CLEARWAY_TOPIC_PARTITIONS": "12",
            "CLEARWAY_TOPIC_REPLICATION_FACTOR": "3",
            "CLEARWAY_TOPIC_MIN_INSYNC_REPLICAS": "2",
        }
    ).topic_layout
    assert (layout.partitions, layout.replication_factor) == (12, 3)
    assert layout.configs() == {"min.insync.replicas": "2"}
    assert TopicLayout().configs() == {}
    # intents carry the broker's time (ADR 0054); other topics the sender's
    assert layout.configs("p." + INTENTS_TOPIC)["message.timestamp.type"] == "LogAppendTime"
    assert "message.timestamp.type" not in layout.configs("p.clearway.transfer.events.v1")


def test_an_impossible_topic_layout_is_refused_by_name():
    with pytest.raises(SettingsError) as e:
        PlatformSettings.from_env({"CLEARWAY_TOPIC_REPLICATION_FACTOR": "0"})
    assert "CLEARWAY_TOPIC_REPLICATION_FACTOR" in e.value.problems
    with pytest.raises(SettingsError, match="MIN_INSYNC_REPLICAS must not exceed"):
        PlatformSettings.from_env(
            {"CLEARWAY_TOPIC_REPLICATION_FACTOR": "2", "CLEARWAY_TOPIC_MIN_INSYNC_REPLICAS": "3"}
        )
    with pytest.raises(ValueError, match=r"min\.insync\.replicas"):
        TopicLayout(3, 1, 2)


def test_services_migrate_and_create_topics_at_start_unless_told_not_to():
    assert PlatformSettings().migrate_at_start and PlatformSettings().create_topics_at_start
    p = PlatformSettings.from_env(
        {"CLEARWAY_MIGRATE_AT_START": "false", "CLEARWAY_CREATE_TOPICS_AT_START": "false"}
    )
    assert not p.migrate_at_start and not p.create_topics_at_start


def test_ssl_logs_in_with_the_client_certificate_alone(tmp_path: Path):
    cert, key = _client_cert(tmp_path)
    env = {
        "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SSL",
        "CLEARWAY_KAFKA_SSL_CERTFILE": str(cert),
        "CLEARWAY_KAFKA_SSL_KEYFILE": str(key),
    }
    link = PaySettings.from_env(env).kafka
    options = link.client_options()
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    ctx = options["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED
    security = _security(link)
    assert type(security) is BaseSecurity and security.use_ssl
    # no Kafka password to miss: the certificate is the login
    assert "CLEARWAY_PAY_KAFKA_PASSWORD" not in PaySettings.from_env(env).development_secrets()


def test_production_refuses_ssl_without_a_client_certificate():
    with pytest.raises(SettingsError) as e:
        PaySettings.from_env(
            {"CLEARWAY_ENV": "production", "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SSL"}
        )
    assert "CLEARWAY_KAFKA_SSL_CERTFILE" in e.value.problems
    assert "CLEARWAY_PAY_KAFKA_PASSWORD" not in e.value.problems


def test_plain_logins_of_managed_clusters_go_over_tls_only():
    env = {
        "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CLEARWAY_KAFKA_SASL_MECHANISM": "PLAIN",
        "CLEARWAY_PAY_KAFKA_USERNAME": "API-KEY",
        "CLEARWAY_PAY_KAFKA_PASSWORD": "api-secret",
    }
    link = PaySettings.from_env(env).kafka
    assert link.client_options()["sasl_mechanism"] == "PLAIN"
    security = _security(link)
    assert isinstance(security, SASLPlaintext) and security.use_ssl
    with pytest.raises(SettingsError, match="PLAIN needs SASL_SSL"):
        PlatformSettings.from_env({**env, "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    with pytest.raises(ValueError, match="PLAIN"):
        KafkaLink("b:9092", "SASL_PLAINTEXT", "PLAIN", KafkaLogin("u", "p"))


def test_clearway_topics_knows_every_topic_with_its_dead_letters():
    topics = platform_topics("p.")
    assert "p.clearway.transfer.intents.v1" in topics
    assert "p.clearway.transfer.intents.v1.transfer-intents.dlt" in topics
    for domain in ("transfer", "webhooks", "consent", "audit", "vault", "rail"):
        assert f"p.{events_topic(domain)}" in topics
    assert all(t.startswith("p.") for t in topics) and topics == sorted(set(topics))


def test_the_commands_refuse_what_they_cannot_do_before_connecting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from clearway.shared.provision import migrate_main, topics_main

    assert migrate_main(["no-such-service"]) == 2
    assert "no migrations for no-such-service" in capsys.readouterr().err
    monkeypatch.setenv("CLEARWAY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("CLEARWAY_ADMIN_KAFKA_PASSWORD", raising=False)
    assert topics_main([]) == 2
    assert "CLEARWAY_ADMIN_KAFKA_PASSWORD is required" in capsys.readouterr().err
    monkeypatch.setenv("CLEARWAY_TOPIC_REPLICATION_FACTOR", "0")
    assert topics_main([]) == 2
    assert "CLEARWAY_TOPIC_REPLICATION_FACTOR" in capsys.readouterr().err
