"""``python -m clearway.audit``: the audit service on
``$CLEARWAY_AUDIT_HOST:$CLEARWAY_AUDIT_PORT`` (127.0.0.1:8004)."""

from __future__ import annotations

import uvicorn

from clearway.audit.bootstrap import build_app
from clearway.audit.settings import AuditSettings
from clearway.shared.logging import configure_logging
from clearway.shared.telemetry import setup_tracing


def main() -> None:
    settings = AuditSettings.from_env_or_exit()
    configure_logging("audit")
    setup_tracing("audit", otlp_endpoint=settings.platform.otlp_endpoint)
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
