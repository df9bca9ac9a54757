"""Data keys of the envelope: derivation and the bounded cache (docs/design.md §9).

A record's data key is derived from its batch key and its nonce with the key
derivation of AES-GCM-SIV (RFC 8452 §4, ADR 0016). Unwrapped keys stay in memory
in a :class:`DekCache`, bounded in entries and lifetime (ADR 0031):

- *batch keys* (and format-1 data keys) by the header naming their wrapped form,
  an LRU: reading a batch costs one HSM unwrap per time-to-live;
- *record keys*: the ready AES-GCM object of each record recently sealed or
  opened, by its header and nonce (which name exactly one data key), first in
  first out. Opening such a record skips the derivation and the AES key
  schedule, which cost more than the cipher itself on small records.

Every record keeps its own key; the cache only avoids computing it again. Both
parts are emptied by :meth:`DekCache.clear` (crypto-shredding, destroyed KEK
versions).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["BatchKey", "DekCache"]

_LE = [i.to_bytes(4, "little") for i in range(4)]
_NONCE = 12


class BatchKey:
    """An unwrapped batch key: derives the data key of a record from its nonce."""

    __slots__ = ("_ecb", "_lock")

    def __init__(self, key: bytes) -> None:
        # ECB over four fixed blocks is the PRF step of RFC 8452 §4, not a data mode
        self._ecb: CipherContext = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
        self._lock = threading.Lock()  # one cipher context is not safe across threads

    def data_key(self, nonce: bytes) -> AESGCM:
        """The record's AES-256-GCM key: the first 8 bytes of AES(batch key,
        LE32(i) ‖ nonce) for i = 0..3 (RFC 8452 §4)."""
        le0, le1, le2, le3 = _LE
        blocks = le0 + nonce + le1 + nonce + le2 + nonce + le3 + nonce
        with self._lock:
            out = self._ecb.update(blocks)
        return AESGCM(out[0:8] + out[16:24] + out[32:40] + out[48:56])

    def derive(self, count: int) -> tuple[bytes, bytes]:
        """``count`` fresh random nonces (12 bytes each) and their data keys (32 bytes
        each, the same as :meth:`data_key`), with one AES call for all of them.

        ECB works block by block, so the blocks LE32(i) ‖ nonce are laid out as four
        runs (one per i) and the keys gathered from them with strided copies: a few
        C-level operations per batch of records instead of several calls per record.
        """
        nonces = os.urandom(_NONCE * count)
        run = bytearray(16 * count)  # block k: LE32(i) ‖ nonce k
        for j in range(_NONCE):
            run[4 + j :: 16] = nonces[j::_NONCE]
        blocks = bytearray()
        for i in range(4):
            run[0::16] = bytes([i]) * count  # LE32(i) for i < 4: one byte, then zeros
            blocks += run
        with self._lock:
            out = self._ecb.update(bytes(blocks))
        keys = bytearray(32 * count)
        size = 16 * count
        for i in range(4):  # key k = out[i-th run, block k][:8] for i = 0..3
            for j in range(8):
                keys[8 * i + j :: 32] = out[size * i + j : size * (i + 1) : 16]
        return nonces, bytes(keys)


Key = AESGCM | BatchKey  # format 1: the data key itself; formats 2 and 3: a batch key


class DekCache:
    """Unwrapped keys in memory, bounded in entries and lifetime (module docstring).

    At most ``size`` batch keys (least recently used leave first) and ``records``
    record keys, none used more than ``ttl_s`` seconds after it was stored.
    ``size=0`` turns the whole cache off, ``records=0`` only the record keys.

    Record keys live in two generations: new keys go to the young one, which becomes
    the old one when it holds ``records / 2`` keys or is ``ttl_s / 2`` old, and the
    old one is then dropped whole. Storing and finding a key is a dictionary
    operation, without a lock (atomic in CPython); the counters are statistics.
    """

    def __init__(
        self,
        size: int = 4096,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        records: int = 256,
    ) -> None:
        self.size, self.ttl_s, self._clock = size, ttl_s, clock
        self.records = records if size > 0 else 0
        self._items: OrderedDict[bytes, tuple[float, Key]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.record_hits = self.record_misses = 0
        self._young: dict[bytes, tuple[bytes, AESGCM]] = {}  # by GCM tag
        self._old: dict[bytes, tuple[bytes, AESGCM]] = {}
        self._half = max(self.records // 2, 1)
        self._turn_at = clock() + ttl_s / 2  # when the young generation turns old

    def get(self, wrapped: bytes) -> Key | None:
        """The unwrapped key named by a record's header, if held and not expired."""
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

    def put(self, wrapped: bytes, key: Key) -> None:
        """Hold an unwrapped key (evicting the least recently used beyond ``size``)."""
        if self.size <= 0:
            return
        with self._lock:
            self._items[wrapped] = (self._clock() + self.ttl_s, key)
            self._items.move_to_end(wrapped)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def record(self, tag: bytes) -> tuple[bytes, AESGCM] | None:
        """``(header and nonce, data key)`` of the record whose GCM tag is ``tag``, if
        held; the key belongs to a blob only if the blob starts with that header and
        nonce (the tag is only where to look: anyone can copy a tag)."""
        if self._clock() >= self._turn_at:
            self._turn()
        held = self._young.get(tag) or self._old.get(tag)
        if held is None:
            self.record_misses += 1
        else:
            self.record_hits += 1
        return held

    def put_record(self, tag: bytes, head: bytes, key: AESGCM) -> None:
        """Hold the data key of the record with GCM tag ``tag``, whose header and nonce
        (which name the key) are ``head``."""
        if self.records <= 0:
            return
        young = self._young
        young[tag] = (head, key)
        if len(young) >= self._half:  # the age limit is checked where keys are read
            self._turn()

    def _turn(self) -> None:
        half = self.ttl_s / 2
        with self._lock:
            now = self._clock()
            if now >= self._turn_at + half:  # both generations are older than the TTL
                self._young, self._old, self._turn_at = {}, {}, now + half
            elif now >= self._turn_at:  # the young one's entries are at most TTL/2 old
                self._young, self._old, self._turn_at = {}, self._young, self._turn_at + half
            elif len(self._young) >= self._half:
                self._young, self._old, self._turn_at = {}, self._young, now + half

    def record_keys(self) -> int:
        """How many record keys are held."""
        return len(self._young) + len(self._old)

    def clear(self) -> None:
        """Forget every key, batch and record keys."""
        with self._lock:
            self._items.clear()
            self._young, self._old = {}, {}

    def __len__(self) -> int:
        return len(self._items)
