"""Encrypted links from settings (docs/design.md §9): Postgres TLS parameters in the
admin DSN reach every service's own DSN; Kafka TLS files reach the client."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from clearway.shared.db import service_dsn
from clearway.shared.kafka_link import KafkaLogin
from clearway.shared.settings import PlatformSettings


def test_postgres_tls_parameters_reach_the_service_dsn():
    admin = (
        "postgresql://postgres:pw@db.example:5432/clearway?sslmode=verify-full&sslrootcert=/ca.pem"
    )
    query = parse_qs(urlsplit(service_dsn(admin, "transfer", "s3")).query)
    assert query == {"sslmode": ["verify-full"], "sslrootcert": ["/ca.pem"]}


def test_kafka_tls_settings_make_an_encrypted_link(tmp_path: Path):
    platform = PlatformSettings.from_env(
        {
            "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CLEARWAY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CLEARWAY_KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem"),
        }
    )
    link = platform.kafka_link(KafkaLogin("clearway-transfer", "pw"))
    assert link.encrypted and link.ssl_cafile == tmp_path / "ca.pem"
    assert link.sasl_mechanism == "SCRAM-SHA-512"
