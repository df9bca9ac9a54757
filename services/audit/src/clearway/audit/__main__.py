"""``python -m clearway.audit``: the audit service on 127.0.0.1:$CLEARWAY_PORT (8004)."""

from __future__ import annotations

import uvicorn

from clearway.audit.bootstrap import AuditSettings, build_app
from clearway.shared.logging import configure_logging
from clearway.shared.telemetry import setup_tracing


def main() -> None:
    configure_logging("audit")
    setup_tracing("audit")
    settings = AuditSettings.from_env()
    uvicorn.run(build_app(settings), host="127.0.0.1", port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
