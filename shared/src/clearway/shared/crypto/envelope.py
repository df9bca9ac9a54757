"""Envelope encryption of records at rest (docs/design.md §9).

Every record gets a fresh 256-bit data key (DEK); the record is AES-256-GCM
encrypted under it with its :class:`Context` (service, table, column, row id,
tenant) as associated data, so a ciphertext copied to another row, column or
tenant does not decrypt. The DEK is wrapped by the service's primary KEK
version in the key provider (the HSM). The blob is self-describing::

    "CWE" 0x01 | len(kek name) u8 | kek name | kek version u32 | len(wrapped) u16
    | wrapped DEK | nonce (12) | ciphertext ‖ tag (16)

The record's associated data does not cover the KEK version or the wrapped DEK,
so re-wrapping under a new KEK version (:meth:`Envelope.rewrap`) replaces only
the header and never touches the data; the wrapped DEK is itself authenticated
with the KEK name and version. Unwrapped DEKs are kept in a bounded LRU with a
time-to-live, so a record read often costs one HSM call per TTL.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clearway.shared.crypto.keys import KeyProvider, KeyVersionUnknown, UnwrapFailed

__all__ = ["Context", "DekCache", "Envelope", "RecordUnreadable", "kek_version"]

MAGIC = b"CWE\x01"
_NONCE = 12
_TAG = 16


@dataclass(frozen=True)
class Context:
    """Where a record lives; bound to its ciphertext as associated data."""

    service: str
    table: str
    column: str
    row_id: str
    tenant: str = ""

    def aad(self) -> bytes:
        """Length-prefixed fields, so no two contexts encode alike."""
        parts = (self.service, self.table, self.column, self.row_id, self.tenant)
        encoded = b"".join(struct.pack(">I", len(b)) + b for b in (p.encode() for p in parts))
        return MAGIC + encoded

    def __str__(self) -> str:
        tenant = f", tenant {self.tenant}" if self.tenant else ""
        return f"{self.service}.{self.table}.{self.column} of row {self.row_id}{tenant}"


class RecordUnreadable(ValueError):
    """A sealed record that cannot be opened; names the record, never its content."""

    def __init__(self, context: Context | str, why: str) -> None:
        self.record, self.why = str(context), why
        super().__init__(f"{self.record}: {why}")


@dataclass(frozen=True)
class _Header:
    kek: str
    version: int
    wrapped: bytes
    body: int  # offset of the nonce


def _parse(blob: bytes, record: Context | str) -> _Header:
    try:
        if blob[:4] != MAGIC:
            raise RecordUnreadable(record, "not a sealed record (unknown format)")
        n = blob[4]
        kek = blob[5 : 5 + n].decode()
        version, wlen = struct.unpack_from(">IH", blob, 5 + n)
        start = 5 + n + 6
        wrapped = blob[start : start + wlen]
        body = start + wlen
    except (IndexError, struct.error, UnicodeDecodeError):
        raise RecordUnreadable(record, "truncated sealed record") from None
    if len(wrapped) != wlen or len(blob) < body + _NONCE + _TAG:
        raise RecordUnreadable(record, "truncated sealed record")
    return _Header(kek, version, wrapped, body)


def _cache_key(version: int, wrapped: bytes) -> bytes:
    return struct.pack(">I", version) + wrapped


def kek_version(blob: bytes) -> int:
    """The KEK version a sealed record's data key is wrapped under."""
    return _parse(blob, "record").version


class DekCache:
    """Unwrapped data keys by wrapped key: bounded LRU with a time-to-live."""

    def __init__(
        self, size: int = 4096, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size, self.ttl_s, self._clock = size, ttl_s, clock
        self._items: OrderedDict[bytes, tuple[float, AESGCM]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, wrapped: bytes) -> AESGCM | None:
        with self._lock:
            item = self._items.get(wrapped)
            if item is None or item[0] < self._clock():
                if item is not None:
                    del self._items[wrapped]
                self.misses += 1
                return None
            self._items.move_to_end(wrapped)
            self.hits += 1
            return item[1]

    def put(self, wrapped: bytes, aead: AESGCM) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[wrapped] = (self._clock() + self.ttl_s, aead)
            self._items.move_to_end(wrapped)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class Envelope:
    """Seal and open records under one service's KEKs (see the module docstring)."""

    def __init__(self, provider: KeyProvider, cache: DekCache | None = None) -> None:
        self.provider = provider
        self.cache = cache if cache is not None else DekCache()
        self._primary: int | None = None

    @property
    def primary(self) -> int:
        """The KEK version new records are wrapped under (read once, then on :meth:`refresh`)."""
        if self._primary is None:
            self._primary = self.provider.primary()
        return self._primary

    def refresh(self) -> int:
        """Re-read the primary version (after a rotation, possibly by another process)."""
        self._primary = self.provider.primary()
        return self._primary

    def _header(self, version: int, wrapped: bytes) -> bytes:
        name = self.provider.name.encode()
        return (
            MAGIC + bytes([len(name)]) + name + struct.pack(">IH", version, len(wrapped)) + wrapped
        )

    def seal(self, plaintext: bytes, context: Context) -> bytes:
        """Encrypt one record under a fresh data key wrapped by the primary KEK.

        Raises :class:`~clearway.shared.crypto.keys.KeyUnavailable` when the HSM
        is down: nothing is ever returned unencrypted.
        """
        version = self.primary
        dek = AESGCM.generate_key(256)
        wrapped = self.provider.wrap(version, dek)
        aead = AESGCM(dek)
        self.cache.put(_cache_key(version, wrapped), aead)
        nonce = os.urandom(_NONCE)
        return (
            self._header(version, wrapped) + nonce + aead.encrypt(nonce, plaintext, context.aad())
        )

    def _dek(self, header: _Header, record: Context | str) -> AESGCM:
        if header.kek != self.provider.name:
            raise RecordUnreadable(record, f"sealed under another service's key ({header.kek})")
        cache_key = _cache_key(header.version, header.wrapped)
        aead = self.cache.get(cache_key)
        if aead is not None:
            return aead
        try:
            dek = self.provider.unwrap(header.version, header.wrapped)
        except KeyVersionUnknown:
            raise RecordUnreadable(
                record, f"key-encryption key {header.kek} v{header.version} is unknown or destroyed"
            ) from None
        except UnwrapFailed:
            raise RecordUnreadable(
                record, f"data key does not authenticate under {header.kek} v{header.version}"
            ) from None
        aead = AESGCM(dek)
        self.cache.put(cache_key, aead)
        return aead

    def open(self, blob: bytes, context: Context) -> bytes:
        """The plaintext of a sealed record; :class:`RecordUnreadable` naming the record
        when the blob is truncated, its key version gone, or its context altered."""
        header = _parse(blob, context)
        aead = self._dek(header, context)
        nonce = blob[header.body : header.body + _NONCE]
        try:
            return aead.decrypt(nonce, blob[header.body + _NONCE :], context.aad())
        except InvalidTag:
            raise RecordUnreadable(
                context, "does not authenticate (altered, or moved from another record)"
            ) from None

    def rewrap(self, blob: bytes, record: str = "record") -> bytes | None:
        """The blob with its data key re-wrapped under the primary KEK, or ``None`` when
        it already is; the encrypted data is copied unchanged."""
        header = _parse(blob, record)
        version = self.primary
        if header.version == version:
            return None
        if header.kek != self.provider.name:
            raise RecordUnreadable(record, f"sealed under another service's key ({header.kek})")
        try:
            dek = self.provider.unwrap(header.version, header.wrapped)
        except (KeyVersionUnknown, UnwrapFailed) as e:
            raise RecordUnreadable(record, str(e)) from None
        wrapped = self.provider.wrap(version, dek)
        return self._header(version, wrapped) + blob[header.body :]
