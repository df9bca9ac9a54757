"""Signed checkpoints: Ed25519 over a small text note (pure apart from key files).

The signed body follows the shape of a C2SP ``tlog-checkpoint`` note: origin,
tree size, base64 root hash, then the issue time (ms since the epoch). Keys are
named by a key id derived from the public key, so rotation adds a key and
never invalidates an older checkpoint: retired keys stay in the keyring
(public half at least) for verification.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat

ORIGIN = "clearway.audit/v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey) -> str:
    return "audk_" + hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def _b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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


class Keyring:
    """Ed25519 keys by id; one active signing key, older ones kept to verify."""

    def __init__(self) -> None:
        self._private: dict[str, Ed25519PrivateKey] = {}
        self._public: dict[str, Ed25519PublicKey] = {}
        self.active: str | None = None

    @classmethod
    def generate(cls) -> Keyring:
        ring = cls()
        ring.rotate()
        return ring

    def rotate(self) -> str:
        """Add a fresh signing key and make it the active one; returns its id."""
        key = Ed25519PrivateKey.generate()
        kid = key_id_of(key.public_key())
        self._private[kid], self._public[kid] = key, key.public_key()
        self.active = kid
        return kid

    def add_public(self, raw: bytes) -> str:
        key = Ed25519PublicKey.from_public_bytes(raw)
        kid = key_id_of(key)
        self._public.setdefault(kid, key)
        return kid

    def sign_note(self, body: bytes) -> tuple[str, bytes]:
        """``(key id, Ed25519 signature)`` of a note with the active key. Every signed
        statement of the log (checkpoints, retention cuts) goes through here, and each
        starts with its own origin line, so one can never pass for another."""
        if self.active is None or self.active not in self._private:
            raise RuntimeError("the keyring has no active signing key")
        return self.active, self._private[self.active].sign(body)

    def verifies_note(self, key_id: str, body: bytes, signature: bytes) -> bool:
        """Whether ``signature`` over ``body`` is valid under the trusted key ``key_id``."""
        key = self._public.get(key_id)
        if key is None:
            return False
        try:
            key.verify(signature, body)
        except InvalidSignature:
            return False
        return True

    def sign(self, tree_size: int, root: bytes, issued_at: datetime) -> Checkpoint:
        issued_at = issued_at.astimezone(UTC).replace(
            microsecond=issued_at.microsecond // 1000 * 1000
        )
        kid, sig = self.sign_note(checkpoint_body(tree_size, root, issued_at))
        return Checkpoint(tree_size, root, issued_at, kid, sig)

    def verifies(self, cp: Checkpoint) -> bool:
        return self.verifies_note(cp.key_id, cp.body(), cp.signature)

    def public_jwks(self) -> dict[str, Any]:
        """Public keys as an RFC 8037 OKP JWK Set, for outside verifiers."""
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64u(_raw_public(k)),
                    "kid": kid,
                    "use": "sig",
                    "alg": "Ed25519",
                    "active": kid == self.active,
                }
                for kid, k in self._public.items()
            ]
        }

    def to_json(self) -> dict[str, Any]:
        keys = []
        for kid, pub in self._public.items():
            entry = {"kid": kid, "public": _b64u(_raw_public(pub))}
            if kid in self._private:
                raw = self._private[kid].private_bytes(
                    Encoding.Raw, PrivateFormat.Raw, _no_encryption()
                )
                entry["private"] = _b64u(raw)
            keys.append(entry)
        return {"active": self.active, "keys": keys}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Keyring:
        ring = cls()
        for entry in doc.get("keys", []):
            if entry.get("private"):
                key = Ed25519PrivateKey.from_private_bytes(_unb64u(entry["private"]))
                kid = key_id_of(key.public_key())
                ring._private[kid], ring._public[kid] = key, key.public_key()
            else:
                ring.add_public(_unb64u(entry["public"]))
        ring.active = doc.get("active")
        return ring

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        """The keyring in ``path`` (0600 JSON), created with one key when absent.

        Development key storage; production keeps the private key in an HSM
        (docs/design.md §9) behind the same ``sign``/``verifies`` interface.
        """
        if path.exists():
            return cls.from_json(json.loads(path.read_text()))
        ring = cls.generate()
        ring.save(path)
        return ring

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_json(), f)
        tmp.replace(path)


def _no_encryption() -> Any:
    from cryptography.hazmat.primitives.serialization import NoEncryption

    return NoEncryption()
