"""Live and test mode: every tenant has a sandbox twin (docs/design.md §10).

A tenant ``tnt_x`` is live; its twin ``tnt_x_test`` is the same partner in test
mode, with its own clients, keys, endpoints and data. The mode is a property of
the tenant id and nothing else: every token, event and row already carries the
tenant, so every read scoped by tenant is scoped by mode too, and no table, claim
or query needs a second filter that could be forgotten (ADR 0037). Pure: no I/O.
"""

from __future__ import annotations

from enum import StrEnum

#: The suffix that makes a tenant id the sandbox twin of a live tenant.
TEST_SUFFIX = "_test"


class Mode(StrEnum):
    """Which world a tenant's requests act in: real money (live) or the sandbox (test)."""

    LIVE = "live"
    TEST = "test"


def mode_of(tenant: str) -> Mode:
    """The mode of ``tenant``: test for a sandbox twin, live otherwise."""
    return Mode.TEST if tenant.endswith(TEST_SUFFIX) else Mode.LIVE


def sandbox_twin(tenant: str) -> str:
    """The sandbox twin of ``tenant`` (a twin is its own twin)."""
    return tenant if mode_of(tenant) is Mode.TEST else tenant + TEST_SUFFIX


def live_tenant(tenant: str) -> str:
    """The live tenant a twin belongs to (a live tenant is its own); the twin shares
    its live tenant's configuration, such as its home region (docs/design.md §9)."""
    return tenant[: -len(TEST_SUFFIX)] if mode_of(tenant) is Mode.TEST else tenant
