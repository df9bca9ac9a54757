"""``python -m clearway.rail``: the sandbox rail on 127.0.0.1:$CLEARWAY_PORT (8005)."""

from __future__ import annotations

import uvicorn

from clearway.rail.bootstrap import RailSettings, build_app
from clearway.shared.logging import configure_logging
from clearway.shared.telemetry import setup_tracing


def main() -> None:
    configure_logging("sandbox-rail")
    setup_tracing("sandbox-rail")
    settings = RailSettings.from_env()
    uvicorn.run(build_app(settings), host="127.0.0.1", port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
