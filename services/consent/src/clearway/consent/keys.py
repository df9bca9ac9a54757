"""Token signing keys: generated here, encrypted at rest, rotated, published as a JWKS.

Private keys are stored as AES-256-GCM ciphertexts under a key-encryption key from
the settings (``CLEARWAY_CONSENT_KEK``), with the ``kid`` as associated data so a
ciphertext cannot be swapped onto another key's row. Holding the KEK in an HSM/KMS
(envelope encryption, docs/design.md §9) is the data-protection follow-up.

Rotation publishes a new key *before* it signs anything (``activation_delay``):
verifiers refresh their JWKS on an unknown ``kid`` at most every few seconds, so a
key that is already published when its first token arrives is always found. The
old key stays in the JWKS until every token it signed has expired.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey

from clearway.consent import store_keys

log = logging.getLogger(__name__)

SigningKey = ECKey | OKPKey


class KeyEncryption:
    """AES-256-GCM sealing of private key material, bound to its ``kid``."""

    def __init__(self, kek: bytes) -> None:
        if len(kek) != 32:
            raise ValueError("the key-encryption key must be 32 bytes (AES-256)")
        self._aead = AESGCM(kek)

    def seal(self, kid: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, _aad(kid))

    def open(self, kid: str, blob: bytes) -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], _aad(kid))


def _aad(kid: str) -> bytes:
    return f"clearway-consent/signing-key/{kid}".encode()


def generate(alg: str) -> SigningKey:
    if alg == "ES256":
        return ECKey.generate_key("P-256", private=True, auto_kid=True)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519", private=True, auto_kid=True)
    raise ValueError(f"signing algorithm must be ES256 or EdDSA, not {alg}")


@dataclass(frozen=True)
class StoredKey:
    kid: str
    alg: str
    public_jwk: dict[str, Any]
    key: SigningKey
    activates_at: datetime
    retired_at: datetime | None
    publish_until: datetime | None


class KeyRing:
    """The signing keys, cached from the database and reloaded by :meth:`run`."""

    def __init__(
        self,
        encryption: KeyEncryption,
        *,
        alg: str = "ES256",
        max_token_ttl: timedelta = timedelta(minutes=5),
        activation_delay: timedelta = timedelta(seconds=10),
        rotation_interval: timedelta = timedelta(days=1),
    ) -> None:
        self.encryption = encryption
        self.alg = alg
        self.max_token_ttl = max_token_ttl
        self.activation_delay = activation_delay
        self.rotation_interval = rotation_interval
        self._keys: list[StoredKey] = []  # by activates_at, oldest first

    def signer(self, now: datetime | None = None) -> StoredKey:
        """The newest key whose activation time has come."""
        now = now or datetime.now(UTC)
        active = [k for k in self._keys if k.activates_at <= now]
        if not active:
            raise RuntimeError("no active signing key (the key ring was not loaded)")
        return active[-1]

    def jwks(self, now: datetime | None = None) -> dict[str, Any]:
        """Published public keys: pending, current, and retired ones still in use."""
        now = now or datetime.now(UTC)
        return {
            "keys": [
                k.public_jwk for k in self._keys if k.publish_until is None or now < k.publish_until
            ]
        }

    def key(self, kid: str) -> StoredKey | None:
        return next((k for k in self._keys if k.kid == kid), None)

    def sign(self, claims: dict[str, Any], now: datetime | None = None) -> str:
        """An RFC 9068 access token: ``typ: at+jwt`` and the signing key's ``kid``."""
        k = self.signer(now)
        header = {"alg": k.alg, "typ": "at+jwt", "kid": k.kid}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # "EdDSA" (RFC 9864)
            return jwt.encode(header, claims, k.key, algorithms=[k.alg])

    async def load(self, conn: asyncpg.Connection) -> None:
        rows = await store_keys.signing_keys(conn)
        known = {k.kid: k for k in self._keys}
        keys = []
        for r in rows:
            old = known.get(r["kid"])
            key = old.key if old else _import(self.encryption, r)
            keys.append(
                StoredKey(
                    r["kid"],
                    r["alg"],
                    r["public_jwk"],
                    key,
                    r["activates_at"],
                    r["retired_at"],
                    r["publish_until"],
                )
            )
        self._keys = keys

    async def rotate(
        self,
        conn: asyncpg.Connection,
        *,
        immediately: bool = False,
        alg: str | None = None,
        unless_newer_than: datetime | None = None,
    ) -> StoredKey | None:
        """Publish a new key that signs after ``activation_delay``; retire the current one.

        With ``unless_newer_than``, nothing happens when a live key was activated after
        it (another replica rotated first); the check runs under the rotation lock.
        """
        now = datetime.now(UTC)
        alg = alg or self.alg
        key = generate(alg)
        kid = key.kid or ""
        activates = now if immediately else now + self.activation_delay
        public = {**key.as_dict(private=False), "alg": alg, "use": "sig", "kid": kid}
        sealed = self.encryption.seal(kid, key.as_pem(private=True))
        # The last token of the retiring key expires max_token_ttl after the switch;
        # the margin covers the verifiers' clock leeway.
        publish_until = activates + self.max_token_ttl + timedelta(seconds=60)
        async with conn.transaction():
            await store_keys.lock_rotation(conn)
            if unless_newer_than is not None:
                newest = await store_keys.newest_live_activation(conn)
                if newest is not None and newest > unless_newer_than:
                    return None
            await store_keys.retire_live_keys(conn, activates, publish_until)
            await store_keys.insert_key(conn, kid, alg, public, sealed, activates)
        await self.load(conn)
        return next(k for k in self._keys if k.kid == kid)

    async def ensure_current(self, conn: asyncpg.Connection) -> StoredKey | None:
        """Rotate when there is no key, or the current one is older than the interval."""
        await self.load(conn)
        now = datetime.now(UTC)
        live = [k for k in self._keys if k.retired_at is None]
        if not live:
            return await self.rotate(
                conn, immediately=True, unless_newer_than=now - self.rotation_interval
            )
        if live[-1].activates_at + self.rotation_interval <= now:
            log.info("signing key %s is due for rotation", live[-1].kid)
            return await self.rotate(conn, unless_newer_than=now - self.rotation_interval)
        return None


def _import(encryption: KeyEncryption, row: Any) -> SigningKey:
    pem = encryption.open(row["kid"], bytes(row["private_ciphertext"]))
    kind = ECKey if row["alg"] == "ES256" else OKPKey
    return kind.import_key(pem, parameters={"kid": row["kid"]})
