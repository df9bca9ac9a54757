"""``python -m clearway.transfer``: the transfer service on
``$CLEARWAY_TRANSFER_HOST:$CLEARWAY_TRANSFER_PORT`` (127.0.0.1:8001)."""

from __future__ import annotations

from clearway.shared.serving import serve
from clearway.transfer.bootstrap import build_app
from clearway.transfer.settings import TransferSettings


def main() -> None:
    serve("transfer", TransferSettings.from_env_or_exit(), build_app)


if __name__ == "__main__":
    main()
