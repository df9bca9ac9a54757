"""``python -m clearway.webhooks``: the service on
``$CLEARWAY_WEBHOOKS_HOST:$CLEARWAY_WEBHOOKS_PORT`` (127.0.0.1:8002)."""

from __future__ import annotations

from clearway.shared.serving import serve
from clearway.webhooks.bootstrap import SERVICE, build_app
from clearway.webhooks.settings import WebhooksSettings


def main() -> None:
    serve(SERVICE, WebhooksSettings.from_env_or_exit(), build_app)


if __name__ == "__main__":
    main()
