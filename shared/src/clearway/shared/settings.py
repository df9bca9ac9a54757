"""Typed settings read from the environment: one base, one naming scheme (docs/design.md §12).

Two levels, one rule for variable names:

* :class:`PlatformSettings`: the shared infrastructure, the same for every
  service: ``CLEARWAY_<FIELD>`` (``CLEARWAY_DATABASE_URL``,
  ``CLEARWAY_KAFKA_BOOTSTRAP``, ``CLEARWAY_TOPIC_PREFIX``, ``CLEARWAY_ENV`` …).
* :class:`ServiceSettings`: the base of each service's ``settings.py``. Every
  field of a service, including ``port``, ``host`` and ``db_password`` declared
  here, is ``CLEARWAY_<SVC>_<FIELD>`` (``CLEARWAY_TRANSFER_PORT``,
  ``CLEARWAY_WEBHOOKS_HSM_TOKEN``), so one environment can hold every
  service's configuration without collisions. The platform part is nested as
  ``settings.platform``.

Construction is explicit: ``TransferSettings(port=1)`` (tests, benchmarks) is
defaults plus keyword arguments and never reads the environment;
``TransferSettings.from_env()`` (a service's ``__main__``) reads it and raises
:class:`SettingsError` naming every bad variable. Secrets are ``SecretStr`` /
``SecretBytes`` and never appear in ``repr``, logs or the generated
``docs/configuration.md``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BeforeValidator,
    Field,
    SecretBytes,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as SourceError

from clearway.shared.db import service_dsn
from clearway.shared.kafka_link import (
    INTENTS_TOPIC,
    KafkaLink,
    KafkaLogin,
    SaslMechanism,
    SecurityProtocol,
    TopicLayout,
    principal,
)
from clearway.shared.residency import Region, Residency

__all__ = [
    "Base64Secret",
    "Csv",
    "PlatformSettings",
    "ServiceSettings",
    "SettingsError",
    "internal",
    "is_base64",
    "is_internal",
    "is_secret",
    "kafka_login_from_env",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
S = TypeVar("S", bound="_Settings")
Svc = TypeVar("Svc", bound="ServiceSettings")

#: The environment ``from_env`` is reading; ``None``: construction from keyword arguments only.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("clearway_environ", default=None)


#: The fields of a service's Kafka login (absent from services that do not use Kafka).
_KAFKA_LOGIN = frozenset({"kafka_username", "kafka_password"})

#: Why a secret counts as missing: unset (no default) or at its built-in default.
_UNSET = {True: "not set", False: "the built-in development default is in use"}


class SettingsError(ValueError):
    """Invalid configuration; ``problems`` maps each environment variable to what is wrong."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{var}: {why}" for var, why in problems.items()))


def _b64(value: Any) -> Any:
    # Key material comes from the environment as base64 text; bytes (tests) pass through.
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64") from None
    return value


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


#: Binary key material: base64 in the environment, ``bytes`` in code, never printed.
Base64Secret = Annotated[SecretBytes, BeforeValidator(_b64)]
#: A tuple written ``a,b,c`` in the environment (not JSON).
Csv = Annotated[T, NoDecode, BeforeValidator(_split_csv)]


def internal(default: Any = None, **kwargs: Any) -> Any:
    """A field set only in code (a test's JWK Set, a clock): never read from, or
    documented as, an environment variable."""
    return Field(default, json_schema_extra={"clearway_internal": True}, **kwargs)


def is_internal(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("clearway_internal"))


def is_secret(field: FieldInfo) -> bool:
    """True for ``SecretStr``/``SecretBytes`` fields (optionally ``| None``)."""
    return _mentions(field.annotation, (SecretStr, SecretBytes))


def is_base64(field: FieldInfo) -> bool:
    """True for :data:`Base64Secret` fields (base64 in the environment)."""
    return any(isinstance(m, BeforeValidator) and m.func is _b64 for m in field.metadata)


def _reveal(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr | SecretBytes) else value


def _mentions(annotation: Any, types: tuple[type, ...]) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, types):
        return True
    return any(_mentions(a, types) for a in getattr(annotation, "__args__", ()))


class _Environ(EnvSettingsSource):
    """The environment of the current ``from_env`` call, without the internal fields."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            (k if self.case_sensitive else k.lower()): v
            for k, v in self._environ.items()
            if not (self.env_ignore_empty and v == "")
        }

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if is_internal(field):
            return None, field_name, False
        return super().get_field_value(field, field_name)


def _message(error: Mapping[str, Any]) -> str:
    kind, msg = error["type"], str(error["msg"])
    friendly = {
        "int_parsing": "must be an integer",
        "int_from_float": "must be an integer",
        "float_parsing": "must be a number",
        "bool_parsing": "must be a boolean (true/false, 1/0)",
        "missing": "is required",
    }
    # only the message: pydantic's full error would echo the (possibly secret) input
    return friendly.get(kind, msg.removeprefix("Value error, "))


class _Settings(BaseSettings):
    """Shared mechanics: keyword construction, ``from_env``, errors named by variable."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        arbitrary_types_allowed=True,
        use_attribute_docstrings=True,
        env_ignore_empty=True,
        case_sensitive=False,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments win; the environment is read only inside ``from_env``.
        environ = _ENVIRON.get()
        if environ is None:
            return (init_settings,)
        return (init_settings, _Environ(settings_cls, environ))

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The environment variable of a field (``CLEARWAY_TRANSFER_PORT``)."""
        return f"{cls.model_config.get('env_prefix', '')}{field_name}".upper()

    @classmethod
    def env_fields(cls) -> Iterator[tuple[str, str, FieldInfo]]:
        """``(name, variable, field)`` for every field read from the environment."""
        for name, field in cls.model_fields.items():
            if not is_internal(field) and name != "platform":
                yield name, cls.env_name(name), field

    @classmethod
    def _read(cls: type[S], environ: Mapping[str, str], **values: Any) -> S:
        token = _ENVIRON.set(environ)
        try:
            return cls(**values)
        except ValidationError as e:
            raise SettingsError(
                {
                    cls.env_name(str(err["loc"][0])) if err["loc"] else cls.__name__: _message(err)
                    for err in e.errors()
                }
            ) from None
        except SourceError as e:  # a complex value that is not valid JSON
            raise SettingsError({cls.__name__: str(e)}) from None
        finally:
            _ENVIRON.reset(token)

    def replace(self: S, **changes: Any) -> S:
        """A validated copy with some fields changed (``dataclasses.replace`` for settings)."""
        return type(self)(**{**dict(self), **changes})


class PlatformSettings(_Settings):
    """Where the platform's infrastructure is and how this process names things.

    ``CLEARWAY_TOPIC_PREFIX`` lets tests and sandboxes share a broker without
    sharing topics.
    """

    model_config = SettingsConfigDict(env_prefix="CLEARWAY_")

    env: Literal["development", "test", "production"] = "development"
    """Deployment kind; ``production`` refuses the built-in development secrets."""
    database_url: str = "postgresql://postgres@127.0.0.1:55432/clearway"
    """Postgres DSN. With ``CLEARWAY_MIGRATE_AT_START`` (and for ``clearway-migrate``) the
    admin's: migrations run with it. Each service connects as its own role on the same
    host and database, so a service that does not migrate needs neither the admin's user
    nor password here (``postgresql://db.example:5432/clearway?sslmode=verify-full``)."""
    migrate_at_start: bool = True
    """Apply the service's database migrations when it starts (as the admin of
    ``CLEARWAY_DATABASE_URL``); ``false`` where ``clearway-migrate`` ran first (a
    deployment's pre-install job), so the running service holds no admin credentials.
    A service with ``DB_LOGINS=rotated`` still rotates its logins as the admin."""
    create_topics_at_start: bool = True
    """Create the service's missing topics when it starts, as its own principal;
    ``false`` where ``clearway-topics`` created every topic first."""
    topic_partitions: int = Field(default=3, ge=1)
    """Partitions of every topic the platform creates (the most replicas of a service
    that share a consumer group's work)."""
    topic_replication_factor: int = Field(default=1, ge=1)
    """Replicas of every topic the platform creates: 3 on a production cluster (1 only
    for a single development broker)."""
    topic_min_insync_replicas: int | None = Field(default=None, ge=1)
    """``min.insync.replicas`` of the topics the platform creates (2 with 3 replicas: with
    the producers' ``acks=all`` a record is written once two replicas hold it); unset:
    the broker's default."""
    intents_broker_time: bool = True
    """Create the intents topic with ``message.timestamp.type=LogAppendTime``: an
    intent's token is judged at its record's time (ADR 0054), and with this the broker,
    not the initiator, sets that time, so no record can be backdated to stretch an
    expired token. ``false`` only for tests that backdate records; an existing topic
    keeps its configuration (``kafka-configs --alter`` changes it)."""
    kafka_bootstrap: str = "127.0.0.1:59092"
    """Kafka bootstrap servers (``host:port``, comma-separated)."""
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    """``SASL_SSL`` (SASL login over TLS), ``SSL`` (TLS, the client certificate
    ``CLEARWAY_KAFKA_SSL_CERTFILE`` is the login), ``SASL_PLAINTEXT`` (SCRAM login, no
    encryption) or ``PLAINTEXT`` (no login: a broker of your own; refused in production).
    Each service logs in as its own principal (``CLEARWAY_<SVC>_KAFKA_PASSWORD``, or its
    own certificate with ``SSL``)."""
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-256"
    """SASL mechanism of the services' Kafka logins: ``SCRAM-SHA-256``, ``SCRAM-SHA-512``,
    or ``PLAIN`` (a managed cluster's API key and secret; only with ``SASL_SSL``)."""
    kafka_ssl_cafile: Path | None = None
    """CA bundle (PEM) the brokers' certificates are verified against with ``SASL_SSL``
    or ``SSL``; unset: the system's trust store."""
    kafka_ssl_certfile: Path | None = None
    """Client certificate (PEM) for clusters that also require mutual TLS."""
    kafka_ssl_keyfile: Path | None = None
    """Private key (PEM) of ``CLEARWAY_KAFKA_SSL_CERTFILE``."""
    kafka_logins: dict[str, KafkaLogin] = internal({})
    """Kafka logins handed in by code (the test stack), by service name; ``admin`` is
    the super user tests and tools use through ``platform.kafka``."""
    topic_prefix: str = ""
    """Prepended to every topic name, so tests and sandboxes can share a broker."""
    oauth_issuer: str = "http://127.0.0.1:8003"
    """OAuth 2.0 issuer (the consent service's public URL) whose tokens the services accept:
    the ``iss`` of every token, compared as a string (RFC 9068 §4), never fetched."""
    oauth_jwks_url: str | None = None
    """Where the services fetch the issuer's signing keys (RFC 7517 JWK Set) when that is
    not the public URL, e.g. ``http://consent:8003/.well-known/jwks.json`` inside a
    container network; unset: ``<issuer>/.well-known/jwks.json``."""
    otlp_endpoint: str | None = None
    """OTLP/HTTP endpoint for traces (e.g. ``http://127.0.0.1:4318``); unset: no export."""
    local_dir: Path = Path(".local")
    """Directory for local state of the embedded stack (demo clients, dev keys)."""
    region: Region = "eu"
    """Region of this deployment (``eu``, ``us``): a service holding personal data or
    cards (the vault) serves only the tenants of its region and answers 421 for the
    others (docs/design.md §9); global services ignore it."""
    tenant_regions: dict[str, Region] = {}
    """Home region of each tenant, JSON (``{"ten_a": "eu", "ten_b": "us"}``), the same
    in every deployment of every region; tenants not listed live in
    ``CLEARWAY_DEFAULT_REGION``."""
    default_region: Region = "eu"
    """Home region of the tenants ``CLEARWAY_TENANT_REGIONS`` does not list."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PlatformSettings:
        """Read the ``CLEARWAY_*`` variables (``env`` defaults to ``os.environ``)."""
        return cls._read(os.environ if env is None else env)

    def topic(self, name: str) -> str:
        """The physical topic for a logical one (``clearway.transfer.events.v1``)."""
        return f"{self.topic_prefix}{name}"

    def residency(self) -> Residency:
        """This deployment's region and the tenants' home regions."""
        return Residency(self.region, self.tenant_regions, self.default_region)

    @property
    def jwks_url(self) -> str:
        """The URL of the issuer's JWK Set every token-verifying service fetches."""
        issuer = self.oauth_issuer.rstrip("/")
        return self.oauth_jwks_url or f"{issuer}/.well-known/jwks.json"

    @property
    def topic_layout(self) -> TopicLayout:
        """Partitions, replication factor and ``min.insync.replicas`` of new topics."""
        return TopicLayout(
            self.topic_partitions,
            self.topic_replication_factor,
            self.topic_min_insync_replicas,
            (INTENTS_TOPIC,) if self.intents_broker_time else (),
        )

    @model_validator(mode="after")
    def _layout(self) -> PlatformSettings:
        if (m := self.topic_min_insync_replicas) is not None and m > self.topic_replication_factor:
            raise ValueError(
                "CLEARWAY_TOPIC_MIN_INSYNC_REPLICAS must not exceed"
                " CLEARWAY_TOPIC_REPLICATION_FACTOR"
            )
        if self.kafka_sasl_mechanism == "PLAIN" and self.kafka_security_protocol != "SASL_SSL":
            raise ValueError("CLEARWAY_KAFKA_SASL_MECHANISM=PLAIN needs SASL_SSL")
        return self

    def with_database(self, url: str) -> PlatformSettings:
        return self.replace(database_url=url)

    def kafka_link(self, login: KafkaLogin | None = None) -> KafkaLink:
        """The configured link to Kafka, logging in as ``login``."""
        return KafkaLink(
            self.kafka_bootstrap,
            self.kafka_security_protocol,
            self.kafka_sasl_mechanism,
            login if self.kafka_security_protocol.startswith("SASL_") else None,
            self.kafka_ssl_cafile,
            self.kafka_ssl_certfile,
            self.kafka_ssl_keyfile,
        )

    @property
    def kafka(self) -> KafkaLink:
        """The link as the ``admin`` login handed in by code (tests, tools), if any."""
        return self.kafka_link(self.kafka_logins.get("admin"))

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A DSN may carry a password (RFC 3986 userinfo): never print it.
        for name, value in super().__repr_args__():
            if name == "database_url" and isinstance(value, str):
                value = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", value)
            yield name, value


def kafka_login_from_env(service: str, env: Mapping[str, str] | None = None) -> KafkaLogin | None:
    """The Kafka login of ``service`` from ``CLEARWAY_<SERVICE>_KAFKA_USERNAME`` and
    ``_KAFKA_PASSWORD`` (the variables of its settings), for tools acting as it."""
    environ = os.environ if env is None else env
    password = environ.get(f"CLEARWAY_{service.upper()}_KAFKA_PASSWORD")
    if not password:
        return None
    user = environ.get(f"CLEARWAY_{service.upper()}_KAFKA_USERNAME") or principal(service)
    return KafkaLogin(user, password)


class ServiceSettings(_Settings):
    """Base of every service's settings; a service's ``settings.py`` adds only its own fields."""

    #: the service's short name (``transfer``, ``rail``): its variables are
    #: ``CLEARWAY_<SERVICE>_<FIELD>``
    service: ClassVar[str] = ""

    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    host: str = "127.0.0.1"
    """Address the HTTP server binds (``0.0.0.0`` in containers)."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port of the HTTP server."""
    http_workers: int = Field(1, ge=1, le=64)
    """HTTP worker processes sharing the port, each a full replica of the service (its
    own pools and consumers): about one per core the service may use, fewer where
    Postgres shares the cores (docs/design.md §12)."""
    db_password: SecretStr = SecretStr("dev")
    """Password of the service's own Postgres role (created by its migrations); a static
    password, refused in production, where the logins rotate (docs/design.md §9)."""
    cursor_key: Base64Secret | None = None
    """MAC key of the list cursors (base64 of at least 32 random bytes), the same on
    every replica; unset in development, each process draws its own."""
    kafka_username: str | None = None
    """SASL user of the service's own Kafka principal; unset: ``clearway-<service>``."""
    kafka_password: SecretStr | None = None
    """SASL/SCRAM password of the service's Kafka principal (not needed with
    ``CLEARWAY_KAFKA_SECURITY_PROTOCOL=PLAINTEXT``, which production refuses)."""

    #: False for a service that never connects to Kafka: it has no Kafka login.
    uses_kafka: ClassVar[bool] = True
    #: False for a service without a database (the console): it has no ``DB_PASSWORD``.
    uses_database: ClassVar[bool] = True

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.__dict__.get("abstract_settings"):  # a base with shared fields, not a service
            return
        if not re.fullmatch(r"[a-z][a-z0-9]*", cls.service):
            raise TypeError(f"{cls.__name__}.service must be a short lowercase name")
        cls.model_config = {**cls.model_config, "env_prefix": f"CLEARWAY_{cls.service.upper()}_"}

    @classmethod
    def env_fields(cls) -> Iterator[tuple[str, str, FieldInfo]]:
        for name, var, field in super().env_fields():
            if not cls.uses_kafka and name in _KAFKA_LOGIN:
                continue
            if not cls.uses_database and name == "db_password":
                continue
            yield name, var, field

    @classmethod
    def from_env(
        cls: type[Svc],
        env: Mapping[str, str] | None = None,
        *,
        production_checks: bool = True,
        **values: Any,
    ) -> Svc:
        """Read the platform's and this service's variables (``env`` defaults to
        ``os.environ``); ``values`` override them. Raises :class:`SettingsError`
        naming every bad variable, also for a development secret in production
        (``production_checks=False``: a tool such as ``clearway-migrate`` that uses
        none of the service's secrets)."""
        environ = os.environ if env is None else env
        problems: dict[str, str] = {}
        platform = values.pop("platform", None)
        if platform is None:
            try:
                platform = PlatformSettings.from_env(environ)
            except SettingsError as e:
                problems |= e.problems
                platform = PlatformSettings()
        try:
            settings = cls._read(environ, platform=platform, **values)
        except SettingsError as e:
            raise SettingsError(problems | e.problems) from None
        if problems:
            raise SettingsError(problems)
        if platform.env == "production" and production_checks:
            settings.refuse_development_secrets()
        unset = settings.unset_secrets()
        for var in settings.development_secrets():
            why = "development only" if var in unset else "using the built-in development default"
            log.warning("%s not set: %s", var, why)
        return settings

    @classmethod
    def from_env_or_exit(cls: type[Svc], env: Mapping[str, str] | None = None) -> Svc:
        """``from_env`` for a ``__main__``: a bad configuration ends the process with
        the variables at fault (exit status 2) instead of a traceback."""
        try:
            return cls.from_env(env)
        except SettingsError as e:
            name = cls.service or cls.__name__
            print(f"clearway-{name}: invalid configuration\n{e}", file=sys.stderr)
            raise SystemExit(2) from None

    def development_secrets(self) -> list[str]:
        """The variables of secrets still at their built-in development default."""
        # Without a Kafka login to make (PLAINTEXT, outside production) there is no
        # Kafka password to miss.
        protocol = self.platform.kafka_security_protocol
        no_login = protocol == "SSL" or (
            protocol == "PLAINTEXT" and self.platform.env != "production"
        )
        return [
            var
            for name, var, field in self.env_fields()
            if is_secret(field)
            and _reveal(getattr(self, name)) == _reveal(field.default)
            and not (no_login and name == "kafka_password")
        ]

    def unset_secrets(self) -> list[str]:
        """The variables of secrets without any default that are not set."""
        return [
            var
            for name, var, field in self.env_fields()
            if is_secret(field) and field.default is None and getattr(self, name) is None
        ]

    def refuse_development_secrets(self) -> None:
        """Raise naming every :meth:`production_problems`, all of them at once."""
        problems = self.production_problems()
        if problems:
            raise SettingsError(problems)

    def production_problems(self) -> dict[str, str]:
        """What production refuses, by variable: every secret still at its built-in
        development default or unset, the static database password unless the
        service's logins rotate, and an unauthenticated Kafka link for a service that
        uses Kafka. Subclasses add theirs to ``super().production_problems()``."""
        unset = self.unset_secrets()
        problems = {
            var: f"required in production ({_UNSET[var in unset]})"
            for var in self.development_secrets()
        }
        if self.uses_database and not self.rotates_db_logins:
            problems[self.env_name("db_password")] = self.static_db_password_refusal()
        if self.uses_kafka and self.platform.kafka_security_protocol == "PLAINTEXT":
            var = PlatformSettings.env_name("kafka_security_protocol")
            problems[var] = "PLAINTEXT is refused in production (use SASL_SSL)"
        if (
            self.uses_kafka
            and self.platform.kafka_security_protocol == "SSL"
            and self.platform.kafka_ssl_certfile is None
        ):
            var = PlatformSettings.env_name("kafka_ssl_certfile")
            problems[var] = "SSL logs in with the client certificate: set it (and the key)"
        return problems

    @property
    def rotates_db_logins(self) -> bool:
        """True when the service logs in with rotated passwords instead of ``db_password``."""
        return False

    @property
    def db_role_password(self) -> str | None:
        """The ``role_password`` of :func:`~clearway.shared.db.migrate`: the static password,
        or ``None`` when the logins rotate (the role becomes their ``NOLOGIN`` group)."""
        return None if self.rotates_db_logins else self.db_password.get_secret_value()

    def static_db_password_refusal(self) -> str:
        """Why ``db_password`` is refused in production (a service with rotation names it)."""
        return (
            "a static database password is refused in production, and this service"
            " has no rotated database logins yet (docs/design.md §9)"
        )

    @property
    def kafka(self) -> KafkaLink:
        """How this service reaches Kafka: the platform's link, logged in as the service's
        own principal (``CLEARWAY_<SVC>_KAFKA_*``, or a login handed in by the test stack)."""
        if self.kafka_password is not None:
            login: KafkaLogin | None = KafkaLogin(
                self.kafka_username or principal(self.service),
                self.kafka_password.get_secret_value(),
            )
        else:
            login = self.platform.kafka_logins.get(self.service)
        return self.platform.kafka_link(login)

    @property
    def cursor_secret(self) -> bytes | None:
        """The list-cursor key for ``create_app(cursor_secret=...)``."""
        return self.cursor_key.get_secret_value() if self.cursor_key is not None else None

    @property
    def service_dsn(self) -> str:
        """DSN of the service's own Postgres role (created by its migrations)."""
        return service_dsn(
            self.platform.database_url, self.service, self.db_password.get_secret_value()
        )

    @property
    def issuer(self) -> str:
        """The OAuth issuer without a trailing slash (RFC 8414 §2 ``issuer`` identifier)."""
        return self.platform.oauth_issuer.rstrip("/")
