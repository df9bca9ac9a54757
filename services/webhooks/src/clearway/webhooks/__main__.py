"""``python -m clearway.webhooks``: the service on
``$CLEARWAY_WEBHOOKS_HOST:$CLEARWAY_WEBHOOKS_PORT`` (127.0.0.1:8002)."""

from __future__ import annotations

import uvicorn

from clearway.shared.logging import configure_logging
from clearway.shared.telemetry import setup_tracing
from clearway.webhooks.bootstrap import SERVICE, build_app
from clearway.webhooks.settings import WebhooksSettings


def main() -> None:
    settings = WebhooksSettings.from_env_or_exit()
    configure_logging(SERVICE)
    setup_tracing(SERVICE, otlp_endpoint=settings.platform.otlp_endpoint)
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
