"""``python -m clearway.consent`` serves the consent service on
``$CLEARWAY_CONSENT_HOST:$CLEARWAY_CONSENT_PORT`` (127.0.0.1:8003);
``python -m clearway.consent seed`` seeds the demo tenants and writes
``$CLEARWAY_LOCAL_DIR/dev-clients.json``."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from clearway.consent.bootstrap import build_app, seed_standalone
from clearway.consent.settings import ConsentSettings
from clearway.shared.logging import configure_logging
from clearway.shared.telemetry import setup_tracing


def main(argv: list[str]) -> int:
    settings = ConsentSettings.from_env_or_exit()
    configure_logging("consent")
    setup_tracing("consent", otlp_endpoint=settings.platform.otlp_endpoint)
    if argv[:1] == ["seed"]:
        if settings.platform.env == "production":  # demo users with a published password
            print("clearway-consent: seed is refused in production", file=sys.stderr)
            return 2
        path = asyncio.run(seed_standalone(settings, rotate="--rotate" in argv))
        print(f"wrote {path}")
        return 0
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_config=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
