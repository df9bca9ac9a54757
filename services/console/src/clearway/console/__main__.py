"""``python -m clearway.console``: the console on
``$CLEARWAY_CONSOLE_HOST:$CLEARWAY_CONSOLE_PORT`` (127.0.0.1:8007)."""

from __future__ import annotations

import uvicorn

from clearway.console.bootstrap import build_app
from clearway.console.settings import ConsoleSettings
from clearway.shared.logging import configure_logging
from clearway.shared.telemetry import setup_tracing


def main() -> None:
    settings = ConsoleSettings.from_env_or_exit()
    configure_logging("console")
    setup_tracing("console", otlp_endpoint=settings.platform.otlp_endpoint)
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
