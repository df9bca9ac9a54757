"""One step between two dated API versions (docs/design.md §10).

Each step is a small module under ``clearway.shared.versions.changes`` holding a
``VersionChange``: what changed (its ``title`` and ``description`` are the
upgrade guide, ``docs/changes/<version>.md``, and the ``CHANGELOG.md`` entry),
``upgrade`` (a document of the previous version → this version) and
``downgrade`` (this version → the previous). Services render the newest
version; the HTTP edge runs ``downgrade`` of every step newer than the
caller's version, newest first (Stripe's model). Webhook payloads are built
from event data, which keeps the shape of the first dated version: the
dispatcher runs ``upgrade`` of every step up to the endpoint's version.
A step that changes response shapes also gives ``downgrade_schema``, which
``clearway-versions write`` runs over the services' OpenAPI documents (current
version) to publish one document per dated version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: A JSON document (a parsed response body or webhook payload ``data``).
Document = Any


@dataclass(frozen=True)
class VersionChange:
    """A backwards-incompatible change introduced by the dated ``version``.

    ``upgrade`` and ``downgrade`` are pure functions over parsed JSON that
    return the transformed document (they may build a new one); a document
    that does not contain what the change is about comes back unchanged.
    ``downgrade_schema`` does for an OpenAPI document what ``downgrade`` does
    for a response: the schemas of this version → those of the previous one
    (None when no response schema changes).
    """

    version: str
    title: str
    description: str
    upgrade: Callable[[Document], Document]
    downgrade: Callable[[Document], Document]
    downgrade_schema: Callable[[Document], Document] | None = None
