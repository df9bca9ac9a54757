"""Signing-key providers: versioned private keys that sign, public keys that verify
(docs/design.md §9).

A provider holds the signing keys of one purpose (``name``, e.g. ``audit-checkpoint``).
Each version is a key pair; the highest version whose private key is live is the
*primary* one and signs. Rotation adds a version; retiring destroys the private
keys below a minimum version, while every public key stays (signatures made
earlier must keep verifying). Version numbers are never reused.

Two algorithms: ``Ed25519`` (RFC 8032, JWS ``EdDSA``) and ``ES256`` (ECDSA P-256
with SHA-256, the signature as ``r ‖ s``: RFC 7518 §3.4, the JWS form).

Two implementations: :class:`~clearway.shared.crypto.hsm_signing.HsmSigningProvider`
(PKCS#11; the private key is generated in the token and never leaves it) and
:class:`KeyringSigningProvider` (a local file or memory, development only).
"""

from __future__ import annotations

import abc
import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_der_private_key,
)

from clearway.shared.crypto.keys import KeyVersionUnknown

__all__ = [
    "Algorithm",
    "KeyringSigningProvider",
    "PublicKey",
    "SigningProvider",
]

Algorithm = Literal["Ed25519", "ES256"]


def _b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class PublicKey:
    """A public key: ``Ed25519`` (32 raw bytes) or ``ES256`` (the uncompressed SEC1
    point of P-256, 65 bytes)."""

    alg: Algorithm
    raw: bytes

    def verifies(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (Ed25519, or ES256 ``r ‖ s``) is valid over ``data``."""
        try:
            if self.alg == "Ed25519":
                Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
            else:
                if len(signature) != 64:
                    return False
                r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.raw)
                key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True

    def jwk(self) -> dict[str, str]:
        """The public JWK members (RFC 8037 OKP or RFC 7518 EC), without ``kid``/``alg``."""
        if self.alg == "Ed25519":
            return {"kty": "OKP", "crv": "Ed25519", "x": _b64u(self.raw)}
        return {"kty": "EC", "crv": "P-256", "x": _b64u(self.raw[1:33]), "y": _b64u(self.raw[33:])}

    @property
    def jws_alg(self) -> str:
        """The JWS ``alg`` of signatures by this key (RFC 8037 §3.1, RFC 7518 §3.4)."""
        return "EdDSA" if self.alg == "Ed25519" else "ES256"


class SigningProvider(abc.ABC):
    """Versioned signing keys of one purpose; see the module docstring."""

    #: which HSM or file holds the keys, for messages (never key material)
    kind: str = ""

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    def versions(self) -> list[int]:
        """Versions whose private key is live, oldest first (re-read from the store)."""

    @abc.abstractmethod
    def public_keys(self) -> dict[int, PublicKey]:
        """The public key of every version ever created, destroyed ones included."""

    def primary(self) -> int:
        """The version that signs: the highest live one."""
        live = self.versions()
        if not live:
            raise KeyVersionUnknown(self.name, 0)
        return live[-1]

    @abc.abstractmethod
    def sign(self, version: int, data: bytes) -> bytes:
        """The signature of ``data`` by ``version`` (Ed25519, or ES256 ``r ‖ s``);
        :class:`KeyVersionUnknown` when its private key is gone."""

    @abc.abstractmethod
    def create_version(self) -> int:
        """Generate a new key pair inside the key store; it becomes primary."""

    @abc.abstractmethod
    def destroy_version(self, version: int) -> None:
        """Destroy the private key of ``version``; its public key stays."""

    def ensure(self) -> int:
        """The primary version, creating version 1 on first start; raises
        :class:`~clearway.shared.crypto.keys.KeyUnavailable` when the store is down."""
        live = self.versions()
        return live[-1] if live else self.create_version()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions or handles."""


def _public_of(alg: Algorithm, private: Any) -> PublicKey:
    if alg == "Ed25519":
        return PublicKey(alg, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    point = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return PublicKey(alg, point)


class KeyringSigningProvider(SigningProvider):
    """Development signing keys in ``<directory>/<name>.sig.json`` (0600), or only in
    memory when ``directory`` is ``None`` (tests). ``CLEARWAY_ENV=production``
    refuses it (see :mod:`.settings`)."""

    kind = "keyring"

    def __init__(
        self, name: str, directory: Path | None, *, algorithm: Algorithm = "Ed25519"
    ) -> None:
        super().__init__(name)
        self.algorithm: Algorithm = algorithm
        self.path = directory / f"{name}.sig.json" if directory is not None else None
        self._doc: dict[str, dict[str, str]] = {}

    def _load(self) -> dict[str, dict[str, str]]:
        if self.path is not None and self.path.exists():
            self._doc = json.loads(self.path.read_text())["versions"]
        return self._doc

    def _save(self, doc: dict[str, dict[str, str]]) -> None:
        self._doc = doc
        if self.path is not None:
            self.save(self.path)

    def save(self, path: Path) -> None:
        """Write the keys to ``path`` (0600), e.g. to hand an in-memory ring to a CLI."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"versions": self._doc}, f)
        tmp.replace(path)

    def versions(self) -> list[int]:
        return sorted(int(v) for v, e in self._load().items() if "private" in e)

    def public_keys(self) -> dict[int, PublicKey]:
        return {
            int(v): PublicKey(e["alg"], base64.b64decode(e["public"]))  # type: ignore[arg-type]
            for v, e in self._load().items()
        }

    def sign(self, version: int, data: bytes) -> bytes:
        entry = self._load().get(str(version))
        if entry is None or "private" not in entry:
            raise KeyVersionUnknown(self.name, version)
        key = load_der_private_key(base64.b64decode(entry["private"]), None)
        if isinstance(key, Ed25519PrivateKey):
            return key.sign(data)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def create_version(self) -> int:
        doc = dict(self._load())
        version = max((int(v) for v in doc), default=0) + 1
        private: Any = (
            Ed25519PrivateKey.generate()
            if self.algorithm == "Ed25519"
            else ec.generate_private_key(ec.SECP256R1())
        )
        der = private.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        doc[str(version)] = {
            "alg": self.algorithm,
            "public": base64.b64encode(_public_of(self.algorithm, private).raw).decode(),
            "private": base64.b64encode(der).decode(),
        }
        self._save(doc)
        return version

    def destroy_version(self, version: int) -> None:
        doc = dict(self._load())
        entry = doc.get(str(version))
        if entry is not None:
            doc[str(version)] = {k: v for k, v in entry.items() if k != "private"}
            self._save(doc)
