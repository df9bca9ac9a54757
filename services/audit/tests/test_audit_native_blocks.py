"""The compiled verification loop (``clearway.audit_native``, ADR 0041) against the
pure-Python path of ``clearway.audit.blocks``: the same result for valid blocks of
every shape, for every kind of damage, and for random and truncated buffers, which
must never crash it (the COPY data is hostile input)."""

from __future__ import annotations

import random
import struct
from hashlib import sha256

import pytest

from clearway.audit.blocks import hash_block
from clearway.audit.merkle import Frontier, root_of
from clearway.audit_native import hash_block as native_hash_block

from .test_audit_blocks_and_cuts import copy_data


def random_rows(rng: random.Random, start: int, stop: int) -> list[tuple[int, bytes, bytes]]:
    out = []
    for p in range(start, stop):
        size = rng.choice((0, 1, 55, 56, 63, 64, 119, rng.randrange(0, 1200)))
        content = bytes(rng.randrange(256) for _ in range(size))
        out.append((p, sha256(b"\x00" + content).digest(), content))
    return out


def both(buf: bytes, start: int, stop: int, inner=(), want_leaves=False):
    fast = hash_block(buf, start, stop, inner, want_leaves)
    pure = hash_block(buf, start, stop, inner, want_leaves, native=False)
    assert fast == pure
    return fast


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 7, 8, 9, 31, 255, 256, 257, 1000])
def test_valid_blocks_give_the_same_leaves_and_compact_ranges(n):
    rng = random.Random(n)
    for start in (0, 1 << 12, 77):  # aligned and the unaligned first block of a run
        rows = random_rows(rng, start, start + n)
        leaves = [h for _, h, _ in rows]
        inner = sorted(rng.sample(range(start + 1, start + n), min(3, max(0, n - 1))))
        r = both(copy_data(rows), start, start + n, inner)
        assert r.failure is None
        f = Frontier()
        f.extend(leaves)
        assert r.compact == f.hashes
        if n and n & (n - 1) == 0:
            assert r.compact == [root_of(leaves)]
        for size in inner:
            g = Frontier()
            g.extend(leaves[: size - start])
            assert r.inner[size] == g.hashes
        assert both(copy_data(rows), start, start + n, want_leaves=True).leaves == leaves


def test_inner_sizes_repeated_or_unsorted_are_taken_once_in_order():
    rows = random_rows(random.Random(1), 0, 40)
    r = both(copy_data(rows), 0, 40, inner=[30, 10, 30])
    assert sorted(r.inner) == [10, 30]


def _damaged(rng: random.Random) -> list[tuple[str, bytes]]:
    rows = random_rows(rng, 0, 17)
    good = copy_data(rows)
    altered = (5, rows[5][1], rows[5][2] + b"!")
    null = b"".join(
        [
            copy_data(rows[:3])[:-2],
            struct.pack(">hiqi", 3, 8, 3, 32),
            rows[3][1],
            struct.pack(">i", -1),
            copy_data(rows[4:])[19:],
        ]
    )
    return [
        ("deleted", copy_data(rows[:4] + rows[5:])),
        ("duplicated", copy_data([*rows[:6], rows[5], *rows[6:]])),
        (
            "swapped",
            copy_data(
                [*rows[:2], (2, rows[2][1], rows[3][2]), (3, rows[3][1], rows[2][2]), *rows[4:]]
            ),
        ),
        ("reordered-and-altered", copy_data([rows[9], *rows[:5], altered, *rows[6:9], *rows[10:]])),
        ("extra", copy_data([*rows, rows[-1]])),
        ("last-deleted", copy_data(rows[:-1])),
        ("altered", copy_data([*rows[:5], altered, *rows[6:]])),
        ("stored-hash", copy_data([*rows[:5], (5, bytes(32), rows[5][2]), *rows[6:]])),
        ("short-hash", copy_data([*rows[:5], (5, rows[5][1][:31], rows[5][2]), *rows[6:]])),
        ("null-content", null),
        ("no-trailer", good[:-2]),
        ("bad-trailer", good[:-2] + b"\xff\xfe"),
        ("trailing", good + b"\x00"),
        ("field-count", good[:19] + b"\x00\x04" + good[21:]),
        ("huge-length", good[: 19 + 50] + b"\x7f\xff\xff\xff" + good[19 + 54 :]),
        ("negative-length", good[: 19 + 50] + b"\xff\xff\xff\xfe" + good[19 + 54 :]),
        ("header-extension", good[:15] + b"\xff\xff\xff\xff" + good[19:]),
        ("empty", b""),
        ("signature-only", good[:11]),
        ("header-only", good[:19]),
    ]


@pytest.mark.parametrize("case", range(20))
def test_every_kind_of_damage_is_named_the_same_way(case):
    name, buf = _damaged(random.Random(7))[case]
    r = both(buf, 0, 17)
    assert r.failure is not None, name


def test_truncated_or_trailing_copy_data_is_unreadable_at_every_cut():
    rows = random_rows(random.Random(3), 0, 6)
    good = copy_data(rows)
    for cut in range(len(good)):
        r = both(good[:cut], 0, 6)
        assert r.failure is not None and r.failure[1] == "unreadable", cut
    for extra in (b"\x00", b"\xff\xff", good[19:]):
        r = both(good + extra, 0, 6)
        assert r.failure is not None and r.failure[1] == "unreadable"


def test_random_and_bit_flipped_buffers_never_crash_and_agree():
    rng = random.Random(2026)
    rows = random_rows(rng, 0, 33)
    good = copy_data(rows)
    for _ in range(1500):
        buf = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        if rng.random() < 0.3:
            buf = buf[: rng.randrange(len(buf) + 1)]
        both(bytes(buf), 0, 33)
    for _ in range(300):
        noise = good[:19] + bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
        both(noise, 0, rng.randrange(4))


def test_the_compiled_loop_refuses_what_it_cannot_hold():
    rows = random_rows(random.Random(5), 0, 4)
    buf = copy_data(rows)
    # more records claimed than the buffer could hold: no allocation from the claim
    assert native_hash_block(buf, 19, 0, 1 << 62, []) is None
    assert native_hash_block(buf, len(buf) + 5, 0, 4, []) is None
    assert native_hash_block(buf, -1, 0, 4, []) is None
    for inner in ([0], [4], [2, 2], [3, 1], ["x"]):
        with pytest.raises((ValueError, TypeError)):
            native_hash_block(buf, 19, 0, 4, inner)
    with pytest.raises(ValueError):
        native_hash_block(buf, 19, 4, 0, [])
    # any buffer-protocol object, without copying
    ok = native_hash_block(memoryview(bytearray(buf)), 19, 0, 4, [])
    assert ok is not None and ok[0] == b"".join(h for _, h, _ in rows)
