"""The development seed's OAuth clients (``<local dir>/dev-clients.json``).

The consent service's demo seed (development only) registers the platform's own
clients and writes their secrets there; tools and services that call the platform
as one of them (the breach drill as the operator, the transfer service for its
service tokens) read it when no secret is configured, so ``make run`` and
``docker-compose.yml`` need no copying of secrets. Production configures every
secret and never reads this file.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["seeded_client_secret"]


def seeded_client_secret(local_dir: Path, client_id: str) -> str | None:
    """The secret the development seed wrote for ``client_id``; ``None`` when absent."""
    try:
        clients = json.loads((Path(local_dir) / "dev-clients.json").read_text())
    except (OSError, ValueError):
        return None
    for c in clients if isinstance(clients, list) else []:
        if isinstance(c, dict) and c.get("client_id") == client_id:
            return str(c["client_secret"])
    return None
