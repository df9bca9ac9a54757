"""``python -m clearway.rail``: the sandbox rail on
``$CLEARWAY_RAIL_HOST:$CLEARWAY_RAIL_PORT`` (127.0.0.1:8005)."""

from __future__ import annotations

from clearway.rail.bootstrap import build_app
from clearway.rail.settings import RailSettings
from clearway.shared.serving import serve


def main() -> None:
    serve("sandbox-rail", RailSettings.from_env_or_exit(), build_app)


if __name__ == "__main__":
    main()
