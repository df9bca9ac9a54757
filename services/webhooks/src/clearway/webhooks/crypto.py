"""Endpoint signing secrets at rest: the kit's envelope (docs/design.md §9).

Each ``whsec_`` secret is sealed under a fresh data key wrapped by the service's
KEK in the HSM, bound to its endpoint and tenant, so a sealed secret copied onto
another endpoint does not open.
"""

from __future__ import annotations

from clearway.shared.crypto import Context, Envelope

SERVICE = "webhooks"


def _context(endpoint_id: str, tenant: str) -> Context:
    return Context(SERVICE, "endpoint_secrets", "sealed", endpoint_id, tenant)


class SecretBox:
    """Seal and open endpoint secrets through an :class:`Envelope`."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope

    def seal(self, plaintext: str, endpoint_id: str, tenant: str) -> bytes:
        return self.envelope.seal(plaintext.encode(), _context(endpoint_id, tenant))

    def open(self, sealed: bytes, endpoint_id: str, tenant: str) -> str:
        return self.envelope.open(sealed, _context(endpoint_id, tenant)).decode()
