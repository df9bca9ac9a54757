"""Dated API versions: the ``Clearway-Version`` header and its deprecation signals.

docs/design.md §10: the URL carries the major version (``/v1``); within it a dated
``Clearway-Version: YYYY-MM-DD`` header picks the behaviour. Deprecated
versions keep working but say so with ``Deprecation`` (RFC 9745), ``Sunset``
(RFC 8594) and a ``Link rel="deprecation"`` to the upgrade guide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from email.utils import format_datetime

from clearway.shared import versions as dated
from clearway.shared.http.problems import ProblemError
from clearway.shared.versions import Document, VersionChange

VERSION_HEADER = "Clearway-Version"

_DATED = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse(version: str) -> date | None:
    """The date a version string names, or None when it is not ``YYYY-MM-DD``."""
    if not _DATED.fullmatch(version):
        return None
    try:
        return date.fromisoformat(version)
    except ValueError:
        return None


def _midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@dataclass(frozen=True)
class Deprecation:
    """How a deprecated version is retired: when it stops working and where to read how to move.

    ``since`` is the date the deprecation took effect; left out, it is the
    release date of the version that superseded this one.
    """

    sunset: date
    link: str
    since: date | None = None


class UnsupportedVersionError(ProblemError):
    """The ``Clearway-Version`` header is malformed or names a version not served here."""

    def __init__(self, supported: list[str]) -> None:
        super().__init__(
            400,
            "unsupported-version",
            "Unsupported API version",
            # The rejected value is not echoed: nothing a client sends comes back.
            f"The {VERSION_HEADER} header must name a supported dated version (YYYY-MM-DD).",
            supported_versions=supported,
        )


@dataclass(frozen=True)
class ApiVersions:
    """The dated versions a service serves: the current one, older supported ones, deprecated ones.

    ``current`` is always served; a deprecated version is served too (with
    deprecation headers) until it is removed from this object.
    """

    current: str = dated.INITIAL_VERSION
    supported: list[str] = field(default_factory=list)
    deprecated: dict[str, Deprecation] = field(default_factory=dict)
    #: The steps between served versions, oldest first (``clearway.shared.versions``).
    changes: tuple[VersionChange, ...] = ()
    #: The version of a caller that neither asks for one nor is pinned (default: current).
    unpinned: str | None = None

    def __post_init__(self) -> None:
        for version in self.all():
            if _parse(version) is None:
                raise ValueError(f"API version {version!r} is not a YYYY-MM-DD date")

    def all(self) -> list[str]:
        """Every version served, oldest first."""
        return sorted({self.current, *self.supported, *self.deprecated})

    def resolve(self, header: str | None) -> str:
        """The version a request asked for through its ``Clearway-Version`` header.

        Raises ``UnsupportedVersionError`` for a malformed or unknown version.
        """
        if header is None:
            return self.unpinned or self.current
        version = header.strip()
        if _parse(version) is None or version not in self.all():
            raise UnsupportedVersionError(self.all())
        return version

    def pinned(self, pin: object) -> str:
        """The version for a caller pinned to ``pin`` (the token's ``cw_ver`` claim).

        No pin is ``unpinned``; a pin no longer served (sunset) gets the oldest
        version still served, the closest to what the client was built against.
        """
        if not isinstance(pin, str):
            return self.unpinned or self.current
        served = self.all()
        return pin if pin in served else served[0]

    def transforms(self, version: str) -> bool:
        """Whether responses for ``version`` differ from what the routes render."""
        return any(c.version > version for c in self.changes)

    def downgrade(self, doc: Document, version: str) -> Document:
        """A response body rendered at the newest version, as ``version`` expects it."""
        return dated.downgrade(doc, version, self.changes)

    def deprecation_headers(self, version: str) -> list[tuple[str, str]]:
        """``Deprecation``, ``Sunset`` and ``Link`` for ``version``; none unless deprecated."""
        info = self.deprecated.get(version)
        if info is None:
            return []
        since = info.since or self._superseded_on(version)
        return [
            # RFC 9745 §2.1: a structured-field Date, "@" + Unix seconds.
            ("Deprecation", f"@{int(_midnight_utc(since).timestamp())}"),
            # RFC 8594 §3: an HTTP-date (IMF-fixdate).
            ("Sunset", format_datetime(_midnight_utc(info.sunset), usegmt=True)),
            ("Link", f'<{info.link}>; rel="deprecation"'),
        ]

    def sunset(self, version: str) -> date | None:
        """When a deprecated ``version`` stops being served; None if it is not deprecated."""
        info = self.deprecated.get(version)
        return info.sunset if info else None

    def _superseded_on(self, version: str) -> date:
        newer = [v for v in self.all() if v > version]
        released = _parse(newer[0] if newer else self.current)
        assert released is not None  # every served version was checked in __post_init__
        return released


def platform_versions() -> ApiVersions:
    """The dated versions every Clearway service serves: the chain of
    ``clearway.shared.versions``, its deprecations with their upgrade guides, and
    ``INITIAL_VERSION`` for callers without a pin (tokens issued before pinning)."""
    return ApiVersions(
        current=dated.CURRENT_VERSION,
        supported=dated.all_versions(),
        deprecated={
            v: Deprecation(sunset=day, link=dated.upgrade_guide(v))
            for v, day in dated.SUNSETS.items()
        },
        changes=dated.CHANGES,
        unpinned=dated.INITIAL_VERSION,
    )
