"""``python -m clearway.audit``: the audit service on
``$CLEARWAY_AUDIT_HOST:$CLEARWAY_AUDIT_PORT`` (127.0.0.1:8004)."""

from __future__ import annotations

from clearway.audit.bootstrap import build_app
from clearway.audit.settings import AuditSettings
from clearway.shared.serving import serve


def main() -> None:
    serve("audit", AuditSettings.from_env_or_exit(), build_app)


if __name__ == "__main__":
    main()
