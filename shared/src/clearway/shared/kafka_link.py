"""How a process reaches Kafka: bootstrap servers, security protocol, SASL login, TLS.

One value, :class:`KafkaLink`, carries everything a Kafka client needs to connect
as a given principal; every producer, consumer, admin client and FastStream broker
of the kit is built from one (docs/design.md §9). Services get theirs from
settings (``settings.kafka``): the link settings are platform-wide
(``CLEARWAY_KAFKA_SECURITY_PROTOCOL``, ``CLEARWAY_KAFKA_SSL_*``), the login is the
service's own principal (``CLEARWAY_<SVC>_KAFKA_USERNAME``/``_PASSWORD``).

``PLAINTEXT`` (no authentication, no encryption) is for a broker of one's own
outside production; ``SASL_PLAINTEXT`` authenticates with SCRAM (RFC 7677: the
password never crosses the wire) but does not encrypt; ``SASL_SSL`` does both,
optionally presenting a client certificate when the cluster asks for one (with
SCRAM, or with ``PLAIN`` as managed clusters with API keys want it, RFC 4616, which
is allowed over TLS only); ``SSL`` encrypts and authenticates with the client
certificate alone (mutual TLS, RFC 8446 §4.4.2), the principal being its subject.

:class:`TopicLayout` is how the platform's topics are laid out on the cluster
(partitions, replication factor, ``min.insync.replicas``): one value, from settings,
for ``ensure_topics`` and ``clearway-topics`` alike.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

SecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]


def principal(service: str) -> str:
    """The SASL user of a service's own principal (``clearway-transfer``)."""
    return f"clearway-{service}"


@dataclass(frozen=True)
class KafkaLogin:
    """A SASL/SCRAM principal: ``User:<username>`` in the broker's ACLs."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class KafkaLink:
    """Everything a Kafka client needs to connect as one principal."""

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-256"
    login: KafkaLogin | None = None
    ssl_cafile: Path | None = None
    """CA bundle the broker certificates are verified against; unset: the system's."""
    ssl_certfile: Path | None = None
    """Client certificate (PEM) for clusters that require one (mutual TLS)."""
    ssl_keyfile: Path | None = None
    """Private key (PEM) of ``ssl_certfile``."""

    def __post_init__(self) -> None:
        if self.sasl_mechanism == "PLAIN" and self.security_protocol == "SASL_PLAINTEXT":
            # PLAIN sends the password itself (RFC 4616 §2): never without TLS
            raise ValueError("the PLAIN SASL mechanism needs SASL_SSL")

    @property
    def authenticated(self) -> bool:
        return self.security_protocol != "PLAINTEXT"

    @property
    def sasl(self) -> bool:
        """True when the client logs in with SASL (``SSL`` authenticates by certificate)."""
        return self.security_protocol.startswith("SASL_")

    @property
    def encrypted(self) -> bool:
        return self.security_protocol in ("SASL_SSL", "SSL")

    def as_user(self, login: KafkaLogin | None) -> KafkaLink:
        """The same link, connecting as ``login``."""
        return replace(self, login=login)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of an encrypted link: chain and host name verified
        (RFC 6125, :func:`ssl.create_default_context`), TLS 1.2 at least."""
        if not self.encrypted:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ssl_certfile is not None:
            ctx.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return ctx

    def _require_login(self) -> KafkaLogin:
        if self.login is None:
            raise ValueError(f"Kafka over {self.security_protocol} needs a login (SASL user)")
        return self.login

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of aiokafka's producer, consumer and admin client."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.sasl:
            login = self._require_login()
            opts |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": login.username,
                "sasl_plain_password": login.password,
            }
        if self.encrypted:
            opts["ssl_context"] = self.ssl_context()
        return opts


#: The topic initiators publish transfer intents on (docs/design.md §5).
INTENTS_TOPIC = "clearway.transfer.intents.v1"


@dataclass(frozen=True)
class TopicLayout:
    """How a topic of the platform is created: partitions (the most consumers of a
    group that share its work), replication factor and ``min.insync.replicas`` (with
    the producers' ``acks=all``, how many replicas hold a record before it counts as
    written; ``None``: the broker's default)."""

    partitions: int = 3
    replication_factor: int = 1
    min_insync_replicas: int | None = None
    #: topics (by name without the prefix) whose records carry the broker's append time
    #: instead of the producer's (``message.timestamp.type=LogAppendTime``, KIP-32)
    broker_time_topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.replication_factor < 1:
            raise ValueError("a topic needs at least one partition and one replica")
        if self.min_insync_replicas is not None and not (
            1 <= self.min_insync_replicas <= self.replication_factor
        ):
            raise ValueError("min.insync.replicas must be between 1 and the replication factor")

    def configs(self, topic: str = "") -> dict[str, str]:
        """The topic configuration entries of a CreateTopics request for ``topic``."""
        configs = {}
        if self.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.min_insync_replicas)
        if any(topic.endswith(name) for name in self.broker_time_topics):
            configs["message.timestamp.type"] = "LogAppendTime"
        return configs
