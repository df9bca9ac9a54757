"""Development-only key provider: KEKs in a local 0600 JSON file (docs/design.md §9).

Generated on first start under the platform's local directory, never compiled
in. ``CLEARWAY_ENV=production`` refuses it (see :mod:`.settings`). The same
directory holds the development values of secrets that are not KEKs
(:func:`development_secret`), generated the same way.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clearway.shared.crypto.keys import KeyProvider, UnwrapFailed, version_of, wrap_aad

__all__ = ["KeyringProvider", "development_secret"]


class KeyringProvider(KeyProvider):
    """KEK versions of one service in ``<directory>/<name>.json``."""

    kind = "keyring"

    def __init__(self, name: str, directory: Path) -> None:
        super().__init__(name)
        self.path = directory / f"{name}.kek.json"
        self._keys: dict[int, AESGCM] = {}
        self._mtime: float | None = None

    def _load(self) -> dict[int, bytes]:
        if not self.path.exists():
            return {}
        doc = json.loads(self.path.read_text())
        return {int(v): base64.b64decode(k) for v, k in doc["versions"].items()}

    def _refresh(self) -> None:
        mtime = self.path.stat().st_mtime_ns if self.path.exists() else None
        if mtime != self._mtime:
            self._keys = {v: AESGCM(k) for v, k in self._load().items()}
            self._mtime = mtime

    def _save(self, keys: dict[int, bytes]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"versions": {str(v): base64.b64encode(k).decode() for v, k in keys.items()}}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        tmp.replace(self.path)
        self._mtime = None

    def versions(self) -> list[int]:
        self._refresh()
        return sorted(self._keys)

    def _key(self, version: int) -> AESGCM:
        return version_of(lambda: self._keys, self._refresh, self.name, version)

    def wrap(self, version: int, data_key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._key(version).encrypt(nonce, data_key, wrap_aad(self.name, version))

    def unwrap(self, version: int, wrapped: bytes) -> bytes:
        key = self._key(version)
        try:
            return key.decrypt(wrapped[:12], wrapped[12:], wrap_aad(self.name, version))
        except (InvalidTag, ValueError):
            raise UnwrapFailed(
                f"data key does not authenticate under {self.name} v{version}"
            ) from None

    def create_version(self) -> int:
        keys = self._load()
        version = max(keys, default=0) + 1
        keys[version] = AESGCM.generate_key(256)
        self._save(keys)
        return version

    def destroy_version(self, version: int) -> None:
        keys = self._load()
        keys.pop(version, None)
        self._save(keys)
        self._keys.pop(version, None)  # gone in this process too, not only in the file


def development_secret(directory: Path, name: str, size: int = 32) -> bytes:
    """A random secret of ``size`` bytes kept in ``<directory>/<name>.secret`` (0600):
    generated on first use, the same for every later start with that directory.

    Development only: a service in production reads the secret from its settings and
    refuses to start without it (docs/design.md §9). Written to a private temporary
    file and linked into place, so two processes starting at once agree on one value
    and neither reads a half-written file.
    """
    path = directory / f"{name}.secret"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(secrets.token_bytes(size)).decode())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process linked its value first: use that one
        finally:
            tmp.unlink()
    value = base64.b64decode(path.read_text().strip())
    if len(value) != size:
        raise ValueError(f"{path}: not a {size}-byte secret (delete it to generate a new one)")
    return value
