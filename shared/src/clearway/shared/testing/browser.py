"""Debian's Chromium for browser tests (Playwright drives it; never a downloaded build):
one set of flags, so every browser test runs the same headless browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def launch_chromium(
    playwright: Any, profile: Path, *, width: int = 1280, height: int = 900, **options: Any
) -> Any:
    """A persistent browser context of Debian's Chromium with a fresh ``profile`` dir and
    a ``width`` by ``height`` viewport; ``options`` go to Playwright's
    ``launch_persistent_context`` (``bypass_csp``, for example)."""
    return await playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": width, "height": height},
        **options,
    )
