"""Dated API versions and the chain of transformers between them (docs/design.md §10).

``INITIAL_VERSION`` is the first dated version: every client registered before
versions were pinned, and every token without a ``cw_ver`` claim, is on it;
event data keeps its shapes. ``CHANGES`` (one module per step, oldest first)
leads from it to ``CURRENT_VERSION``. Pure: no I/O, no web framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from clearway.shared.versions.change import Document, VersionChange
from clearway.shared.versions.changes import CHANGES

INITIAL_VERSION = "2026-11-01"
CURRENT_VERSION = CHANGES[-1].version if CHANGES else INITIAL_VERSION
#: The JWT claim in which the consent issuer states the client's pinned version.
VERSION_CLAIM = "cw_ver"
#: Where the upgrade guides are published (``docs/changes/<version>.md``).
CHANGES_URL = "https://docs.clearway.dev/changes/"
#: Deprecated versions and their sunset: the initial version is served for a year
#: after its successor shipped (docs/adr/0036-dated-versions-and-transformers.md).
SUNSETS: dict[str, date] = {"2026-11-01": date(2027, 12, 1)}


def all_versions(changes: Sequence[VersionChange] = CHANGES) -> list[str]:
    """Every dated version, oldest first."""
    return [INITIAL_VERSION, *(c.version for c in changes)]


def upgrade_guide(version: str) -> str:
    """The URL of the guide for moving off ``version`` (the next step's page)."""
    newer = [v for v in all_versions() if v > version]
    return f"{CHANGES_URL}{newer[0] if newer else version}"


def downgrade(doc: Document, to: str, changes: Sequence[VersionChange] = CHANGES) -> Document:
    """A document of the newest version as a client on ``to`` expects it."""
    for change in reversed(changes):
        if change.version > to:
            doc = change.downgrade(doc)
    return doc


def upgrade(
    doc: Document, to: str, since: str = INITIAL_VERSION, changes: Sequence[VersionChange] = CHANGES
) -> Document:
    """A document of version ``since`` (event data: the initial version) as of ``to``."""
    for change in changes:
        if since < change.version <= to:
            doc = change.upgrade(doc)
    return doc


__all__ = [
    "CHANGES",
    "CHANGES_URL",
    "CURRENT_VERSION",
    "INITIAL_VERSION",
    "SUNSETS",
    "VERSION_CLAIM",
    "Document",
    "VersionChange",
    "all_versions",
    "downgrade",
    "upgrade",
    "upgrade_guide",
]
