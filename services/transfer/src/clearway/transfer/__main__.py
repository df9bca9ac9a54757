"""``python -m clearway.transfer``: the transfer service on
``$CLEARWAY_TRANSFER_HOST:$CLEARWAY_TRANSFER_PORT`` (127.0.0.1:8001)."""

from __future__ import annotations

import uvicorn

from clearway.shared.logging import configure_logging
from clearway.shared.telemetry import setup_tracing
from clearway.transfer.bootstrap import build_app
from clearway.transfer.settings import TransferSettings


def main() -> None:
    settings = TransferSettings.from_env_or_exit()
    configure_logging("transfer")
    setup_tracing("transfer", otlp_endpoint=settings.platform.otlp_endpoint)
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
