"""The key provider interface: versioned key-encryption keys (docs/design.md §9).

A provider holds the KEKs of one service (``name``: the service). Each KEK has
a positive integer version; the highest live version is the *primary* one and
wraps new data keys, older live versions only unwrap. Rotation adds a version;
retiring destroys every version below a minimum. Wrapping is AES-256-GCM over
the 32-byte data key with the KEK's name and version as associated data, so a
wrapped key relabelled with another version fails to unwrap.

Two implementations: :class:`~clearway.shared.crypto.hsm.HsmProvider` (PKCS#11;
the KEK never leaves the token) and
:class:`~clearway.shared.crypto.keyring.KeyringProvider` (a local file, for
development only).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import TypeVar

K = TypeVar("K")

__all__ = [
    "KeyProvider",
    "KeyUnavailable",
    "KeyVersionUnknown",
    "UnwrapFailed",
    "wrap_aad",
]


class KeyUnavailable(ConnectionError):
    """The key store (HSM) cannot be reached: a dependency outage, answered with 503."""


class KeyVersionUnknown(LookupError):
    """The KEK version is not (or no longer) in the key store."""

    def __init__(self, name: str, version: int) -> None:
        self.name, self.version = name, version
        super().__init__(f"key-encryption key {name} v{version} is unknown or destroyed")


def version_of(
    keys: Callable[[], Mapping[int, K]], refresh: Callable[[], object], name: str, version: int
) -> K:
    """The key of ``version`` in ``keys()``, re-reading the store once when it is not
    there (another replica may have rotated); :class:`KeyVersionUnknown` otherwise."""
    key = keys().get(version)
    if key is None:
        refresh()
        key = keys().get(version)
    if key is None:
        raise KeyVersionUnknown(name, version)
    return key


class UnwrapFailed(ValueError):
    """A wrapped data key does not authenticate under the KEK version it names."""


def wrap_aad(name: str, version: int) -> bytes:
    """Associated data of a wrapped data key: the KEK's name and version."""
    return f"clearway/kek|{name}|{version}".encode()


class KeyProvider(abc.ABC):
    """Versioned key-encryption keys of one service; see the module docstring."""

    #: which HSM or file holds the keys, for messages (never key material)
    kind: str = ""

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    def versions(self) -> list[int]:
        """Live versions, oldest first (re-read from the key store)."""

    def primary(self) -> int:
        """The version that wraps new data keys: the highest live one."""
        live = self.versions()
        if not live:
            raise KeyVersionUnknown(self.name, 0)
        return live[-1]

    @abc.abstractmethod
    def wrap(self, version: int, data_key: bytes) -> bytes:
        """``data_key`` encrypted under KEK ``version`` (nonce ‖ ciphertext ‖ tag)."""

    @abc.abstractmethod
    def unwrap(self, version: int, wrapped: bytes) -> bytes:
        """The data key of ``wrapped``; :class:`UnwrapFailed` when it does not
        authenticate, :class:`KeyVersionUnknown` for a missing version."""

    @abc.abstractmethod
    def create_version(self) -> int:
        """Generate a new KEK version inside the key store; it becomes primary."""

    @abc.abstractmethod
    def destroy_version(self, version: int) -> None:
        """Destroy one KEK version: data keys wrapped by it can never be unwrapped again."""

    def ensure(self) -> int:
        """The primary version, creating version 1 on first start; raises
        :class:`KeyUnavailable` when the key store cannot be reached."""
        live = self.versions()
        return live[-1] if live else self.create_version()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions or handles."""
