"""``python -m clearway.vault``: the card vault on
``$CLEARWAY_VAULT_HOST:$CLEARWAY_VAULT_PORT`` (127.0.0.1:8006)."""

from __future__ import annotations

from clearway.shared.serving import serve
from clearway.vault.bootstrap import SERVICE, build_app
from clearway.vault.settings import VaultSettings


def main() -> None:
    serve(SERVICE, VaultSettings.from_env_or_exit(), build_app)


if __name__ == "__main__":
    main()
