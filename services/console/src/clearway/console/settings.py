"""The console's settings: ``CLEARWAY_CONSOLE_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from clearway.shared.settings import ServiceSettings


class ConsoleSettings(ServiceSettings):
    """The console (docs/console.md): a web application with no database and no broker; it
    signs users in at the consent service and calls the other services' public APIs
    with the signed-in user's own token (ADR 0045)."""

    service: ClassVar[str] = "console"
    uses_kafka: ClassVar[bool] = False
    uses_database: ClassVar[bool] = False

    port: int = 8007
    client_id: str = "clearway-console"
    """The console's OAuth client at the consent service (first-party, confidential)."""
    client_secret: SecretStr | None = None
    """Its client secret (``make run`` reads it from ``.local/dev-clients.json``)."""
    public_url: str = "http://127.0.0.1:8007"
    """The console's own origin as browsers reach it: the OAuth redirect URI is
    ``<public_url>/auth/callback``; with ``https`` the session cookie is ``Secure``."""
    consent_url: str | None = None
    """Base URL of the consent service's OAuth endpoints; unset: ``CLEARWAY_OAUTH_ISSUER``."""
    transfer_url: str = "http://127.0.0.1:8001"
    webhooks_url: str = "http://127.0.0.1:8002"
    audit_url: str = "http://127.0.0.1:8004"
    jaeger_ui_url: str = "http://127.0.0.1:16686"
    """Base URL of the Jaeger UI: a flow's trace link is ``<jaeger_ui_url>/trace/<trace id>``."""
    session_ttl_s: int = Field(1800, gt=0)
    """Longest life of a signed-in session; it also ends when the user's token expires
    (the next page then signs in again, silently while the consent page's sign-in lasts)."""
    max_sessions: int = Field(10_000, gt=0)
    """Sessions held in memory at most (the oldest go first)."""
    upstream_timeout_s: float = Field(10.0, gt=0)
    """Timeout of each call to another service."""

    @property
    def issuer(self) -> str:
        return (self.consent_url or self.platform.oauth_issuer).rstrip("/")

    @property
    def redirect_uri(self) -> str:
        return self.public_url.rstrip("/") + "/auth/callback"

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    def production_problems(self) -> dict[str, str]:
        problems = super().production_problems()
        if self.client_secret is None:
            problems[self.env_name("client_secret")] = "required in production"
        if not self.secure_cookies:
            problems[self.env_name("public_url")] = "must be https in production"
        return problems
