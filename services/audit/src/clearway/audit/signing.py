"""Signed checkpoints: a signature over a small text note (pure apart from the key store).

The signed body follows the shape of a C2SP ``tlog-checkpoint`` note: origin,
tree size, base64 root hash, then the issue time (ms since the epoch). The
private keys live in the kit's signing-key provider (docs/design.md §9): in the
HSM, Ed25519 where the token supports it, else ECDSA P-256; a local keyring in
development. Keys are named by a key id derived from the public key, so rotation
adds a key and never invalidates an older checkpoint: retired versions lose their
private key in the HSM, and their public key stays for verification.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from clearway.shared.crypto.signing import KeyringSigningProvider, PublicKey, SigningProvider

ORIGIN = "clearway.audit/v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


#: the name of the checkpoint signing key in the key store
KEY_NAME = "audit-checkpoint"


def key_id_of(key: PublicKey) -> str:
    """``audk_`` and 16 hex digits of SHA-256 over the raw public key (Ed25519: 32
    bytes, P-256: the uncompressed point)."""
    return "audk_" + hashlib.sha256(key.raw).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    root_hash: bytes
    issued_at: datetime
    key_id: str
    signature: bytes

    def body(self) -> bytes:
        return checkpoint_body(self.tree_size, self.root_hash, self.issued_at)

    def as_json(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "issued_at": self.issued_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
            "signed_note": self.body().decode(),
        }


def checkpoint_body(tree_size: int, root: bytes, issued_at: datetime) -> bytes:
    millis = (issued_at - _EPOCH) // timedelta(milliseconds=1)
    return f"{ORIGIN}\n{tree_size}\n{base64.b64encode(root).decode()}\n{millis}\n".encode()


RECEIPT_ORIGIN = "clearway.audit/v1/verified"


def receipt_body(tree_size: int, root: bytes) -> bytes:
    """The note a verification run signs: the log's first ``tree_size`` records hash
    to ``root`` (its own origin line: it can never pass for a checkpoint)."""
    return f"{RECEIPT_ORIGIN}\n{tree_size}\n{base64.b64encode(root).decode()}\n".encode()


class Keyring:
    """The checkpoint keys by id: the provider's primary version signs, every version's
    public key verifies. Public keys are cached; an unknown key id re-reads them once
    (another process may have rotated)."""

    def __init__(self, provider: SigningProvider) -> None:
        self.provider = provider
        self._public: dict[str, PublicKey] = {}
        self._ids: dict[int, str] = {}
        self.refresh()

    @classmethod
    def generate(cls) -> Keyring:
        """A keyring in memory with one fresh key (tests and benchmarks)."""
        provider = KeyringSigningProvider(KEY_NAME, None)
        provider.ensure()
        return cls(provider)

    @property
    def active(self) -> str:
        """The key id of the version that signs."""
        return self._ids[self.provider.primary()]

    def refresh(self) -> None:
        """Re-read the public keys from the key store (after a rotation)."""
        keys = self.provider.public_keys()
        self._ids = {v: key_id_of(k) for v, k in keys.items()}
        self._public = {key_id_of(k): k for k in keys.values()}

    def rotate(self) -> str:
        """Add a fresh signing version and make it the active one; returns its id
        (tests; operators rotate with ``clearway-keys audit rotate --key audit-checkpoint``)."""
        self.provider.create_version()
        self.refresh()
        return self.active

    def sign_note(self, body: bytes) -> tuple[str, bytes]:
        """``(key id, signature)`` of a note with the primary key. Every signed
        statement of the log (checkpoints, retention cuts) goes through here, and each
        starts with its own origin line, so one can never pass for another. Raises
        :class:`~clearway.shared.crypto.KeyUnavailable` when the HSM is down."""
        version = self.provider.primary()
        if version not in self._ids:
            self.refresh()
        return self._ids[version], self.provider.sign(version, body)

    def verifies_note(self, key_id: str, body: bytes, signature: bytes) -> bool:
        """Whether ``signature`` over ``body`` is valid under the trusted key ``key_id``."""
        key = self._public.get(key_id)
        if key is None:
            self.refresh()
            key = self._public.get(key_id)
        return key is not None and key.verifies(body, signature)

    def sign(self, tree_size: int, root: bytes, issued_at: datetime) -> Checkpoint:
        issued_at = issued_at.astimezone(UTC).replace(
            microsecond=issued_at.microsecond // 1000 * 1000
        )
        kid, sig = self.sign_note(checkpoint_body(tree_size, root, issued_at))
        return Checkpoint(tree_size, root, issued_at, kid, sig)

    def verifies(self, cp: Checkpoint) -> bool:
        return self.verifies_note(cp.key_id, cp.body(), cp.signature)

    def public_jwks(self) -> dict[str, Any]:
        """Public keys as a JWK Set (RFC 8037 OKP or RFC 7518 EC), for outside verifiers;
        ``alg`` is the note signature's (``Ed25519``, or ``ES256`` over SHA-256)."""
        active = self.active
        return {
            "keys": [
                {
                    **k.jwk(),
                    "kid": kid,
                    "use": "sig",
                    "alg": k.alg,
                    "active": kid == active,
                }
                for kid, k in self._public.items()
            ]
        }
