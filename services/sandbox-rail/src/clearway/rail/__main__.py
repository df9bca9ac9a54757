"""``python -m clearway.rail``: the sandbox rail on
``$CLEARWAY_RAIL_HOST:$CLEARWAY_RAIL_PORT`` (127.0.0.1:8005)."""

from __future__ import annotations

import uvicorn

from clearway.rail.bootstrap import build_app
from clearway.rail.settings import RailSettings
from clearway.shared.logging import configure_logging
from clearway.shared.telemetry import setup_tracing


def main() -> None:
    settings = RailSettings.from_env_or_exit()
    configure_logging("sandbox-rail")
    setup_tracing("sandbox-rail", otlp_endpoint=settings.platform.otlp_endpoint)
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
