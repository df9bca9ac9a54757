"""The service's Ed25519 key of Standard Webhooks ``v1a`` signatures (docs/design.md §6, §9).

One key for every endpoint that opted in, generated and used inside the HSM by
the kit's signing provider (the private key never leaves it), rotated and
retired by the kit's machinery (:mod:`clearway.shared.crypto.signing_rotation`,
``clearway-keys webhooks rotate|retire --key webhooks-v1a``). Every live version
signs: after a rotation, during the overlap window, a delivery carries one
``v1a`` signature per version, so a partner holding either public key verifies
it; retiring destroys the older private keys. Partners read the public keys
from ``GET /v1/webhooks/signing-keys``.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import Any

import asyncpg

from clearway.shared.crypto.keys import KeyVersionUnknown
from clearway.shared.crypto.signing import PublicKey, SigningProvider
from clearway.shared.crypto.signing_rotation import (
    retire_signing_keys_after_overlap,
    rotate_signing_key_if_due,
    signing_versions,
)
from clearway.shared.event_writer import EventWriter
from clearway.webhooks.domain import PUBLIC_KEY_PREFIX


def key_id(key: PublicKey) -> str:
    """``whk_`` and 16 hex digits of SHA-256 over the raw Ed25519 public key."""
    return "whk_" + hashlib.sha256(key.raw).hexdigest()[:16]


def whpk(key: PublicKey) -> str:
    """The public key as partners configure it: ``whpk_<base64 of the 32 raw bytes>``."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(key.raw).decode()


class V1aKeys:
    """The live versions of the v1a key, cached (the HSM is not asked per delivery) and
    re-read by :meth:`refresh` (the scheduled job) or when a version turns out gone."""

    def __init__(self, provider: SigningProvider) -> None:
        self.provider = provider
        self._live = provider.versions()

    @property
    def live(self) -> list[int]:
        """The versions that sign, oldest first, as last read."""
        return list(self._live)

    def refresh(self) -> None:
        """Re-read the live versions from the key store."""
        self._live = self.provider.versions()

    def signatures(self, content: bytes) -> list[bytes]:
        """One Ed25519 signature of ``content`` per live version, oldest first. A version
        retired elsewhere since the last refresh is dropped; raises
        :class:`KeyVersionUnknown` when no version is left, and
        :class:`~clearway.shared.crypto.keys.KeyUnavailable` when the HSM is down."""
        for _ in range(2):
            out, stale = [], False
            for version in self._live:
                try:
                    out.append(self.provider.sign(version, content))
                except KeyVersionUnknown:
                    stale = True
            if stale:
                self.refresh()
            if out:
                return out
        raise KeyVersionUnknown(self.provider.name, 0)

    async def keep_current(
        self,
        conn: asyncpg.Connection,
        events: EventWriter,
        *,
        interval: timedelta,
        overlap: timedelta,
    ) -> None:
        """The scheduled job: a new version when the newest is older than ``interval``,
        the older private keys destroyed once the newest has signed beside them for
        ``overlap`` (each step an audited ``platform.key_rotated`` event), then the
        live versions re-read (what ``clearway-keys`` or another replica changed)."""
        await rotate_signing_key_if_due(conn, self.provider, events, interval)
        await retire_signing_keys_after_overlap(conn, self.provider, events, overlap)
        self.refresh()

    async def key_set(self, conn: asyncpg.Connection, overlap: timedelta) -> list[dict[str, Any]]:
        """The published key set: each live version as a JWK (RFC 8037 OKP) with its
        ``kid``, its ``whpk_`` form, when it was made and, while a newer version
        signs beside it, when it stops signing (``retire_after``)."""
        return [
            {
                "kid": key_id(v.public_key),
                **v.public_key.jwk(),
                "alg": v.public_key.jws_alg,
                "use": "sig",
                "whpk": whpk(v.public_key),
                "created_at": v.created_at,
                "retire_after": v.retire_after,
            }
            for v in await signing_versions(conn, self.provider, overlap)
        ]
