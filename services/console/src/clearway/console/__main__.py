"""``python -m clearway.console``: the console on
``$CLEARWAY_CONSOLE_HOST:$CLEARWAY_CONSOLE_PORT`` (127.0.0.1:8007)."""

from __future__ import annotations

from clearway.console.bootstrap import SERVICE, build_app
from clearway.console.settings import ConsoleSettings
from clearway.shared.serving import serve


def main() -> None:
    serve(SERVICE, ConsoleSettings.from_env_or_exit(), build_app)


if __name__ == "__main__":
    main()
