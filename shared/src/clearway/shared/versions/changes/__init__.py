"""Every step between dated API versions, oldest first (docs/design.md §10).

Adding a version: write one module here with its ``CHANGE`` (a description a
partner can follow, ``upgrade`` and ``downgrade``, ``downgrade_schema`` when it
changes a response shape, and unit tests), append it below, then
``clearway-versions write`` regenerates the upgrade guide, ``CHANGELOG.md`` and
the per-version OpenAPI documents.
"""

from clearway.shared.versions.change import VersionChange
from clearway.shared.versions.changes import money_as_object

CHANGES: tuple[VersionChange, ...] = (money_as_object.CHANGE,)
