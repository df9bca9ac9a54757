"""``python -m clearway.transfer``: the transfer service on 127.0.0.1:$CLEARWAY_PORT (8001)."""

from __future__ import annotations

import uvicorn

from clearway.shared.logging import configure_logging
from clearway.shared.telemetry import setup_tracing
from clearway.transfer.bootstrap import TransferSettings, build_app


def main() -> None:
    configure_logging("transfer")
    setup_tracing("transfer")
    settings = TransferSettings.from_env()
    uvicorn.run(build_app(settings), host="127.0.0.1", port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
