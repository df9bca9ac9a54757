"""``python -m clearway.consent`` serves the consent service on
``$CLEARWAY_CONSENT_HOST:$CLEARWAY_CONSENT_PORT`` (127.0.0.1:8003);
``python -m clearway.consent seed`` seeds the demo tenants and writes
``$CLEARWAY_LOCAL_DIR/dev-clients.json``."""

from __future__ import annotations

import asyncio
import sys

from clearway.consent.bootstrap import build_app, seed_standalone
from clearway.consent.settings import ConsentSettings
from clearway.shared.serving import serve, start


def main(argv: list[str]) -> int:
    settings = ConsentSettings.from_env_or_exit()
    if argv[:1] == ["seed"]:
        start("consent", settings)
        if settings.platform.env == "production":  # demo users with a published password
            print("clearway-consent: seed is refused in production", file=sys.stderr)
            return 2
        path = asyncio.run(seed_standalone(settings, rotate="--rotate" in argv))
        print(f"wrote {path}")
        return 0
    serve("consent", settings, build_app)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
