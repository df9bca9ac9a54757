"""A service's OpenAPI document as of each dated version (docs/design.md §10).

Routes render the current version, and so does the document FastAPI builds
from them. ``for_version`` turns it into the document of another version the
way the edge turns a response: the ``downgrade_schema`` of every newer step,
newest first. It states the version (``info.version``), declares the
``Clearway-Version`` header on every operation (the one value this document
describes) and marks a deprecated version with its sunset. Pure: JSON in, JSON out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import date

from clearway.shared.versions import (
    CHANGES,
    CURRENT_VERSION,
    INITIAL_VERSION,
    SUNSETS,
    VERSION_CLAIM,
    Document,
    VersionChange,
    upgrade_guide,
)

#: The request header naming the version (``clearway.shared.http.VERSION_HEADER``).
HEADER = "Clearway-Version"
#: The reusable parameter every operation refers to.
PARAMETER = "ClearwayVersion"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def for_version(
    document: Document,
    version: str,
    changes: Sequence[VersionChange] = CHANGES,
    sunsets: Mapping[str, date] = SUNSETS,
) -> Document:
    """``document`` (rendered at the newest version) as the document of ``version``."""
    doc = copy.deepcopy(document)
    for change in reversed(changes):
        if change.version > version and change.downgrade_schema is not None:
            doc = change.downgrade_schema(doc)
    info = doc.setdefault("info", {})
    info["version"] = version
    notes = [
        f"This document describes dated version `{version}`: send `{HEADER}: {version}`"
        f" or use a client pinned to it (its access tokens' `{VERSION_CLAIM}` claim; without"
        f" either, a request is served as `{INITIAL_VERSION}`). Each response states the"
        f" version it was served with in `{HEADER}`."
    ]
    sunset = sunsets.get(version)
    if sunset is not None:
        info["x-deprecated"] = True
        info["x-sunset"] = sunset.isoformat()
        notes.append(
            f"**Deprecated**: served until {sunset.isoformat()}. Responses carry"
            " `Deprecation` (RFC 9745), `Sunset` (RFC 8594) and"
            f' `Link: <{upgrade_guide(version)}>; rel="deprecation"`, the upgrade guide.'
        )
    info["description"] = "\n\n".join(filter(None, [info.get("description"), *notes]))
    components = doc.setdefault("components", {})
    components.setdefault("parameters", {})[PARAMETER] = {
        "name": HEADER,
        "in": "header",
        "required": False,
        "description": f"The dated API version; this document describes `{version}`"
        f" (current: `{CURRENT_VERSION}`). An unknown one is a 400 `unsupported-version`.",
        "schema": {"type": "string", "enum": [version]},
    }
    ref = {"$ref": f"#/components/parameters/{PARAMETER}"}
    for item in doc.get("paths", {}).values():
        for method in _METHODS:
            operation = item.get(method)
            if operation is not None:
                operation["parameters"] = [*operation.get("parameters", []), dict(ref)]
    return doc
