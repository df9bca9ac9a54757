"""``python -m clearway.vault``: the card vault on
``$CLEARWAY_VAULT_HOST:$CLEARWAY_VAULT_PORT`` (127.0.0.1:8006)."""

from __future__ import annotations

import uvicorn

from clearway.shared.logging import configure_logging
from clearway.shared.telemetry import setup_tracing
from clearway.vault.bootstrap import SERVICE, build_app
from clearway.vault.settings import VaultSettings


def main() -> None:
    settings = VaultSettings.from_env_or_exit()
    configure_logging(SERVICE)
    setup_tracing(SERVICE, otlp_endpoint=settings.platform.otlp_endpoint)
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
