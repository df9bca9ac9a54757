"""Envelope encryption of records at rest (docs/design.md §9).

Every record is AES-256-GCM encrypted under its own data key, with its
:class:`Context` (service, table, column, row id, tenant) as associated data,
so a ciphertext copied to another row, column or tenant does not decrypt.

The data key is not generated and wrapped per record (one HSM call per record
caps sealing at the HSM's rate): the records of one tenant sealed by one process
within a bounded count and time (:class:`BatchPolicy`) share a random 256-bit
*batch key*, wrapped by the service's primary KEK version inside the key
provider (the HSM), and each record's data key is derived from the batch key and
the record's fresh random nonce with the key derivation of AES-GCM-SIV
(RFC 8452 §4: the first 8 bytes of AES(batch key, LE32(i) ‖ nonce) for i = 0..3).
A unique nonce gives a unique, independent data key; one HSM call serves a batch
(ADR 0012). The blob is self-describing::

    "CWE" 0x02 | len(kek name) u8 | kek name | kek version u32 | len(wrapped) u16
    | batch key wrapped by the KEK | nonce (12) | ciphertext ‖ tag (16)

Blobs of format ``0x01`` (a random data key wrapped by the KEK directly, written
before batch keys) still open and re-wrap.

With a :class:`TenantKeySource` (``Envelope(tenant_keys=...)``, ADR 0027) a tenant's
records are format ``0x03``: the same header followed by the id of the tenant's
key, a random 256-bit key stored sealed in the service's own schema; the batch
key that derives the data keys is HMAC-SHA256(tenant key, label ‖ key id ‖ raw
batch key) (RFC 2104 as a PRF), so the KEK alone no longer opens the record.
Destroying the tenant's key rows (crypto-shredding) makes every record of that
tenant unreadable, whoever holds the KEK, while re-wrapping still only swaps the
KEK-wrapped part of the header::

    "CWE" 0x03 | ... as 0x02 up to the wrapped batch key | len(key id) u8 | key id
    | nonce (12) | ciphertext ‖ tag (16)

The record's associated data does not cover the KEK version or the wrapped key,
so re-wrapping under a new KEK version (:meth:`Envelope.rewrap`) replaces only
the header and never touches the data; the wrapped key is itself authenticated
with the KEK name and version. Unwrapped keys are kept in memory, bounded in
count and lifetime (:class:`~clearway.shared.crypto.data_keys.DekCache`, ADR 0031),
so reading costs one HSM call per batch and TTL, and opening a record sealed or
opened here recently needs no derivation; sealing takes nonces and data keys
derived ahead for a chunk of the batch's records.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import struct
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clearway.shared.crypto.data_keys import BatchKey, DekCache, Key
from clearway.shared.crypto.keys import KeyProvider, KeyVersionUnknown, UnwrapFailed

__all__ = [
    "BatchPolicy",
    "Context",
    "DekCache",
    "Envelope",
    "RecordUnreadable",
    "TenantKeySource",
    "kek_version",
]

MAGIC_V1 = b"CWE\x01"  # AES-GCM, DEK wrapped by the KEK (read and re-wrapped, never written)
MAGIC = b"CWE\x02"  # a data key derived from a batch key wrapped by the KEK
MAGIC_TENANT = b"CWE\x03"  # as 0x02, the batch key bound to the tenant's own key
_TENANT_LABEL = b"clearway/tenant-batch-key/v3|"
_NONCE = 12
_TAG = 16
_ALTERED = "does not authenticate (altered, or moved from another record)"
_FIRST_CHUNK, _CHUNK = 16, 256  # records whose keys are derived at once (doubling per chunk)
_VERSION_LEN = struct.Struct(">IH")
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class Context:
    """Where a record lives; bound to its ciphertext as associated data."""

    service: str
    table: str
    column: str
    row_id: str
    tenant: str = ""

    @cached_property
    def associated_data(self) -> bytes:
        """Length-prefixed fields (netstrings over characters, then UTF-8), so no two
        contexts encode alike; encoded once per context (it is immutable)."""
        s, t, c, r, n = self.service, self.table, self.column, self.row_id, self.tenant
        return f"cw2|{len(s)}:{s}{len(t)}:{t}{len(c)}:{c}{len(r)}:{r}{len(n)}:{n}".encode()

    def aad(self) -> bytes:
        """The associated data of format-2 and format-3 blobs (:attr:`associated_data`)."""
        return self.associated_data

    def aad_v1(self) -> bytes:
        """The associated data of format-1 blobs (u32 length prefixes)."""
        out = bytearray(MAGIC_V1)
        for part in (self.service, self.table, self.column, self.row_id, self.tenant):
            raw = part.encode()
            out += _U32.pack(len(raw))
            out += raw
        return bytes(out)

    def __str__(self) -> str:
        tenant = f", tenant {self.tenant}" if self.tenant else ""
        return f"{self.service}.{self.table}.{self.column} of row {self.row_id}{tenant}"


class RecordUnreadable(ValueError):
    """A sealed record that cannot be opened; names the record, never its content."""

    def __init__(self, context: Context | str, why: str) -> None:
        self.record, self.why = str(context), why
        super().__init__(f"{self.record}: {why}")


class TenantKeySource(Protocol):
    """The per-tenant key level (ADR 0027), held in memory by the service
    (:class:`clearway.shared.crypto.tenant_keys.TenantKeys`)."""

    def current(self, tenant: str) -> tuple[str, bytes]:
        """``(key id, key)`` that new records of ``tenant`` are bound to; raises when
        the tenant's keys were destroyed or are not loaded."""
        ...

    def key(self, key_id: str) -> bytes | None:
        """The tenant key ``key_id``, or ``None`` when it is unknown or destroyed."""
        ...

    def missing(self, key_id: str) -> str:
        """Why ``key_id`` is not available, for :class:`RecordUnreadable`."""
        ...


@dataclass(frozen=True)
class _Header:
    batched: bool
    kek: str
    version: int
    wrapped: bytes  # by the KEK: the batch key (format 2, 3) or the DEK (format 1)
    body: int  # offset of the nonce; ``blob[:body]`` names the wrapped key in the cache
    tenant_key: str | None = None  # format 3: the id of the tenant key
    wrapped_end: int = 0  # where the KEK-wrapped part ends (format 3: the key id follows)


def _parse(blob: bytes, record: Context | str) -> _Header:
    magic = blob[:4]
    if magic not in (MAGIC, MAGIC_V1, MAGIC_TENANT):
        raise RecordUnreadable(record, "not a sealed record (unknown format)")
    try:
        n = blob[4]
        kek = blob[5 : 5 + n].decode()
        version, wlen = _VERSION_LEN.unpack_from(blob, 5 + n)
        start = 5 + n + 6
        wrapped = blob[start : start + wlen]
        body = end = start + wlen
        tenant_key = None
        if magic == MAGIC_TENANT:
            tenant_key = blob[end + 1 : end + 1 + blob[end]].decode()
            body = end + 1 + blob[end]
    except (IndexError, struct.error, UnicodeDecodeError):
        raise RecordUnreadable(record, "truncated sealed record") from None
    if len(wrapped) != wlen or len(blob) < body + _NONCE + _TAG:
        raise RecordUnreadable(record, "truncated sealed record")
    return _Header(magic != MAGIC_V1, kek, version, wrapped, body, tenant_key, end)


def _tenant_bound(raw: bytes, key_id: str, tenant_key: bytes) -> bytes:
    """The batch key of a format-3 record: needs both the KEK-wrapped key and the
    tenant's key (HMAC-SHA256 as a PRF, RFC 2104)."""
    return hmac.digest(tenant_key, _TENANT_LABEL + key_id.encode() + b"|" + raw, hashlib.sha256)


def kek_version(blob: bytes) -> int:
    """The KEK version a sealed record's keys are wrapped under."""
    return _parse(blob, "record").version


@dataclass(frozen=True)
class BatchPolicy:
    """How long one batch key seals records: at most ``records`` of them (far below the
    2^32 random-nonce limit of AES-GCM, NIST SP 800-38D §8.3) and ``seconds``."""

    records: int = 65_536
    seconds: float = 300.0


@dataclass
class _Batch:
    header: bytes
    key: BatchKey
    expires: float
    left: int  # records it may still derive keys for
    chunk: int = _FIRST_CHUNK  # records in its next chunk


@dataclass(frozen=True, slots=True)
class _Chunk:
    """Nonces and data keys of records of one batch, derived at once; a record takes
    the next index (``next`` on a count is atomic in CPython), so no two take one."""

    header: bytes
    nonces: bytes
    keys: bytes
    size: int
    expires: float
    taken: Iterator[int]


_ENVELOPES: weakref.WeakSet[Envelope] = weakref.WeakSet()


def _forget_batches_after_fork() -> None:
    # a forked child would otherwise seal with its parent's batch keys and nonces
    for envelope in list(_ENVELOPES):
        envelope._batches, envelope._chunks = {}, {}


os.register_at_fork(after_in_child=_forget_batches_after_fork)


class Envelope:
    """Seal and open records under one service's KEKs (see the module docstring)."""

    def __init__(
        self,
        provider: KeyProvider,
        cache: DekCache | None = None,
        batches: BatchPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        tenant_keys: TenantKeySource | None = None,
    ) -> None:
        self.provider = provider
        #: the per-tenant key level; records of tenant ``""`` (service-wide keys) never use it
        self.tenant_keys = tenant_keys
        self.cache = cache if cache is not None else DekCache()
        self.batches = batches or BatchPolicy()
        self._clock = clock
        self._primary: int | None = None
        self._batches: dict[str, _Batch] = {}  # by tenant: a batch never spans tenants
        self._chunks: dict[str, _Chunk] = {}  # by tenant: the keys of its next records
        self._lock = threading.Lock()
        self._rewrapped: OrderedDict[bytes, bytes] = OrderedDict()  # old header → new one
        _ENVELOPES.add(self)

    @property
    def primary(self) -> int:
        """The KEK version new records are wrapped under (read once, then on :meth:`refresh`)."""
        if self._primary is None:
            self._primary = self.provider.primary()
        return self._primary

    def refresh(self) -> int:
        """Re-read the primary version (after a rotation, possibly by another process);
        the next record starts a batch under it."""
        self._primary = self.provider.primary()
        self._batches, self._chunks = {}, {}
        return self._primary

    def forget_keys(self) -> None:
        """Drop every unwrapped key held in memory (after destroying KEK versions)."""
        self.cache.clear()
        with self._lock:
            self._batches, self._chunks = {}, {}
            self._rewrapped.clear()

    def forget_tenant(self, tenant: str) -> None:
        """Drop what is held in memory of ``tenant``'s keys (after crypto-shredding): its
        current batch, and every unwrapped key, record keys included (the cache is keyed
        by header, not tenant, and refills at one HSM call per batch)."""
        with self._lock:
            self._batches.pop(tenant, None)
            self._chunks.pop(tenant, None)
        self.cache.clear()

    def _header(self, version: int, wrapped: bytes, magic: bytes = MAGIC) -> bytes:
        name = self.provider.name.encode()
        return (
            magic + bytes([len(name)]) + name + _VERSION_LEN.pack(version, len(wrapped)) + wrapped
        )

    def _next_chunk(self, tenant: str) -> tuple[_Chunk, int]:
        """A chunk of ``tenant``'s current batch and the index of the record taken in
        it; a new batch key (one HSM wrap) when the batch is used up or too old."""
        with self._lock:
            now = self._clock()
            chunk = self._chunks.get(tenant)
            if chunk is not None and chunk.expires >= now:
                index = next(chunk.taken)  # another thread may have made this chunk
                if index < chunk.size:
                    return chunk, index
            batch = self._batches.get(tenant)
            if batch is None or batch.expires < now or batch.left <= 0:
                batch = self._batches[tenant] = self._new_batch(tenant, now)
            size = min(batch.chunk, batch.left)
            batch.left -= size
            batch.chunk = min(2 * batch.chunk, _CHUNK)
            nonces, keys = batch.key.derive(size)
            chunk = _Chunk(batch.header, nonces, keys, size, batch.expires, itertools.count(1))
            self._chunks[tenant] = chunk
            return chunk, 0

    def _new_batch(self, tenant: str, now: float) -> _Batch:
        version = self.primary
        raw = AESGCM.generate_key(256)
        tenant_key = None
        if self.tenant_keys is not None and tenant:
            # raises when the tenant was shredded: nothing new is sealed for it
            tenant_key, secret = self.tenant_keys.current(tenant)
        # raises KeyUnavailable when the HSM is down: nothing is sealed without it
        wrapped = self.provider.wrap(version, raw)
        if tenant_key is None:
            key = BatchKey(raw)
            header = self._header(version, wrapped)
        else:
            key = BatchKey(_tenant_bound(raw, tenant_key, secret))
            kid = tenant_key.encode()
            header = self._header(version, wrapped, MAGIC_TENANT) + bytes([len(kid)]) + kid
        self.cache.put(header, key)
        return _Batch(header, key, now + self.batches.seconds, self.batches.records)

    def seal(self, plaintext: bytes, context: Context) -> bytes:
        """Encrypt one record under its own key (derived from the tenant's current batch
        key and a fresh nonce).

        Raises :class:`~clearway.shared.crypto.keys.KeyUnavailable` when a new batch
        key is due and the HSM is down: nothing is ever returned unencrypted.
        """
        chunk = self._chunks.get(context.tenant)
        if chunk is None or chunk.expires < self._clock() or (i := next(chunk.taken)) >= chunk.size:
            chunk, i = self._next_chunk(context.tenant)
        nonce = chunk.nonces[_NONCE * i : _NONCE * i + _NONCE]
        data_key = AESGCM(chunk.keys[32 * i : 32 * i + 32])
        head = chunk.header + nonce
        sealed = head + data_key.encrypt(nonce, plaintext, context.associated_data)
        self.cache.put_record(sealed[-_TAG:], head, data_key)  # opening it needs no derivation
        return sealed

    def _kek_unwrap(self, blob: bytes, record: Context | str) -> tuple[Key, int]:
        """The unwrapped key of ``blob`` and the offset of its nonce."""
        header = _parse(blob, record)
        if header.kek != self.provider.name:
            raise RecordUnreadable(record, f"sealed under another service's key ({header.kek})")
        key = self._unwrap(header, record)
        if header.tenant_key is not None:
            key = self._tenant_bound(key, header.tenant_key, record)
        aead = BatchKey(key) if header.batched else AESGCM(key)
        self.cache.put(blob[: header.body], aead)
        return aead, header.body

    def _tenant_bound(self, raw: bytes, key_id: str, record: Context | str) -> bytes:
        secret = self.tenant_keys.key(key_id) if self.tenant_keys is not None else None
        if secret is None:
            why = (
                self.tenant_keys.missing(key_id)
                if self.tenant_keys is not None
                else f"tenant key {key_id} is not loaded (no tenant keys in this process)"
            )
            raise RecordUnreadable(record, why)
        return _tenant_bound(raw, key_id, secret)

    def _unwrap(self, header: _Header, record: Context | str) -> bytes:
        try:
            return self.provider.unwrap(header.version, header.wrapped)
        except KeyVersionUnknown:
            raise RecordUnreadable(
                record, f"key-encryption key {header.kek} v{header.version} is unknown or destroyed"
            ) from None
        except UnwrapFailed:
            raise RecordUnreadable(
                record, f"data key does not authenticate under {header.kek} v{header.version}"
            ) from None

    def open(self, blob: bytes, context: Context) -> bytes:
        """The plaintext of a sealed record; :class:`RecordUnreadable` naming the record
        when the blob is truncated, its key version gone, or its context altered."""
        # hot path: a record sealed or opened here recently, found by its tag; its key
        # is used only when the blob has the header and nonce that key belongs to
        held = self.cache.record(blob[-_TAG:])
        if held is not None and blob.startswith(held[0]) and len(blob) >= len(held[0]) + _TAG:
            at = len(held[0])
            try:
                return held[1].decrypt(blob[at - _NONCE : at], blob[at:], context.associated_data)
            except InvalidTag:
                raise RecordUnreadable(context, _ALTERED) from None
        # the header of a cached batch key is found without parsing the blob
        try:
            body = 11 + blob[4] + int.from_bytes(blob[9 + blob[4] : 11 + blob[4]])
            if blob[3] == 3:  # format 3: the tenant key id follows
                body += 1 + blob[body]
        except IndexError:
            body = 0
        key = self.cache.get(blob[:body]) if body and len(blob) >= body + _NONCE + _TAG else None
        if key is None:
            key, body = self._kek_unwrap(blob, context)
        at = body + _NONCE
        if isinstance(key, BatchKey):
            data_key = key.data_key(blob[body:at])
            plaintext = self._decrypt(data_key, blob, at, context.associated_data, context)
            self.cache.put_record(blob[-_TAG:], blob[:at], data_key)
            return plaintext
        return self._decrypt(key, blob, at, context.aad_v1(), context)

    @staticmethod
    def _decrypt(data_key: AESGCM, blob: bytes, at: int, aad: bytes, context: Context) -> bytes:
        try:
            return data_key.decrypt(blob[at - _NONCE : at], blob[at:], aad)
        except InvalidTag:
            raise RecordUnreadable(context, _ALTERED) from None

    def rewrap(self, blob: bytes, record: str = "record") -> bytes | None:
        """The blob with its key re-wrapped under the primary KEK, or ``None`` when it
        already is; the encrypted data is copied unchanged.

        Records of one batch share their header, so a column is re-wrapped with one
        HSM unwrap and wrap per batch, not per record.
        """
        header = _parse(blob, record)
        version = self.primary
        if header.version == version:
            return None
        if header.kek != self.provider.name:
            raise RecordUnreadable(record, f"sealed under another service's key ({header.kek})")
        old = blob[: header.body] + _U32.pack(version)
        with self._lock:
            new = self._rewrapped.get(old)
        if new is None:
            key = self._unwrap(header, record)
            magic = blob[:4]  # the tenant key id (format 3) is kept as it is
            tenant_part = blob[header.wrapped_end : header.body]
            new = self._header(version, self.provider.wrap(version, key), magic) + tenant_part
            with self._lock:
                self._rewrapped[old] = new
                while len(self._rewrapped) > max(self.cache.size, 64):
                    self._rewrapped.popitem(last=False)
        return new + blob[header.body :]
