"""Data keys of the envelope: derivation in bulk and the bounded cache (ADR 0016, 0031)."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clearway.shared.crypto.data_keys import BatchKey, DekCache


def test_keys_derived_in_bulk_are_those_of_rfc_8452_derivation() -> None:
    batch = BatchKey(os.urandom(32))
    for count in (1, 16, 256):
        nonces, keys = batch.derive(count)
        assert len(nonces) == 12 * count and len(keys) == 32 * count
        assert len({nonces[12 * i : 12 * i + 12] for i in range(count)}) == count
        for i in range(count):
            nonce, key = nonces[12 * i : 12 * i + 12], keys[32 * i : 32 * i + 32]
            sealed = AESGCM(key).encrypt(nonce, b"record", b"aad")
            assert batch.data_key(nonce).decrypt(nonce, sealed, b"aad") == b"record"


def test_a_data_key_is_the_first_halves_of_four_aes_blocks() -> None:
    """RFC 8452 §4 with a 256-bit key: AES(K, LE32(i) ‖ nonce)[:8] for i = 0..3."""
    raw = os.urandom(32)
    nonce, key = BatchKey(raw).derive(1)
    ecb = Cipher(algorithms.AES(raw), modes.ECB()).encryptor()
    assert key == b"".join(ecb.update(i.to_bytes(4, "little") + nonce)[:8] for i in range(4))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record_key() -> tuple[bytes, bytes, AESGCM]:
    """A record's GCM tag, its header and nonce, and its data key."""
    return os.urandom(16), os.urandom(40), AESGCM(os.urandom(32))


def test_record_keys_are_bounded_in_number() -> None:
    cache = DekCache(size=8, ttl_s=60, clock=Clock(), records=100)
    keys = [record_key() for _ in range(1000)]
    for tag, head, key in keys:
        cache.put_record(tag, head, key)
        assert cache.record_keys() <= 100
    assert cache.record(keys[-1][0]) == (keys[-1][1], keys[-1][2])  # the newest stay
    assert cache.record(keys[0][0]) is None  # the oldest left


def test_a_record_key_is_never_used_after_its_time_to_live() -> None:
    clock = Clock()
    cache = DekCache(size=8, ttl_s=10, clock=clock, records=100)
    stored: list[tuple[float, bytes, bytes, AESGCM]] = []
    for step in range(200):  # a record key every 0.25 s, all read back at every step
        clock.now = step * 0.25
        tag, head, key = record_key()
        cache.put_record(tag, head, key)
        stored.append((clock.now, tag, head, key))
        for at, old_tag, old_head, old_key in stored:
            found = cache.record(old_tag)
            if clock.now - at >= 10:
                assert found is None, f"a key stored at {at} s used at {clock.now} s"
            elif found is not None:
                assert found == (old_head, old_key)
    assert cache.record(stored[-1][1]) is not None
    clock.now += 100  # idle: both generations expired
    assert cache.record(stored[-1][1]) is None
    assert cache.record_keys() == 0


def test_clear_forgets_record_and_batch_keys() -> None:
    cache = DekCache(size=8, ttl_s=60, clock=Clock())
    tag, head, key = record_key()
    cache.put_record(tag, head, key)
    cache.put(b"header", BatchKey(os.urandom(32)))
    cache.clear()
    assert cache.record(tag) is None and cache.get(b"header") is None
    assert cache.record_keys() == 0 and len(cache) == 0


def test_size_zero_turns_the_whole_cache_off_and_records_zero_the_record_keys() -> None:
    tag, head, key = record_key()
    for cache in (DekCache(0), DekCache(records=0)):
        cache.put_record(tag, head, key)
        assert cache.record(tag) is None
    off = DekCache(0)
    off.put(b"header", key)
    assert off.get(b"header") is None
