"""Pure parts of verification: signed cut statements and block hashing of binary COPY."""

from __future__ import annotations

import struct
from dataclasses import replace
from datetime import UTC, datetime
from hashlib import sha256

import pytest

from clearway.audit.blocks import hash_block
from clearway.audit.cuts import RetentionCut, cut_verifies, sign_cut
from clearway.audit.merkle import Frontier, leaf_hash, root_of
from clearway.audit.signing import Checkpoint, Keyring

T = datetime(2026, 9, 1, 12, 0, 0, 123456, tzinfo=UTC)


def a_cut(ring: Keyring) -> RetentionCut:
    leaves = [leaf_hash(b"%d" % i) for i in range(20)]
    f = Frontier()
    f.extend(leaves)
    return sign_cut(
        ring,
        RetentionCut(20, f.hashes, 20, f.root(), ("records_20260801t00",), "ops", "why", T),
    )


def test_a_signed_cut_verifies_and_any_changed_field_does_not():
    ring = Keyring.generate()
    cut = a_cut(ring)
    assert cut_verifies(ring, cut) and cut.key_id == ring.active
    assert cut.cut_at.microsecond == 123000  # the body carries milliseconds
    for change in (
        {"size": 21},
        {"frontier": [cut.frontier[1], cut.frontier[0]]},
        {"checkpoint_size": 16},
        {"checkpoint_root": b"\x00" * 32},
        {"partitions": ("records_20260901t00",)},
        {"operator": "mallory"},
        {"reason": "other"},
        {"cut_at": datetime(2027, 1, 1, tzinfo=UTC)},
    ):
        assert not cut_verifies(ring, replace(cut, **change)), change
    assert not cut_verifies(Keyring.generate(), cut)  # an untrusted key
    assert not cut_verifies(ring, replace(cut, signature=b""))


def test_a_cut_signature_never_passes_for_a_checkpoint_signature():
    ring = Keyring.generate()
    cut = a_cut(ring)
    assert cut.body().startswith(b"clearway.audit/retention-cut/v1\n")
    as_checkpoint = Checkpoint(cut.size, cut.checkpoint_root, cut.cut_at, cut.key_id, cut.signature)
    assert not ring.verifies(as_checkpoint)


def copy_data(rows: list[tuple[int, bytes, bytes]]) -> bytes:
    """PostgreSQL binary COPY of (bigint, bytea, text) rows, written from its documentation."""
    out = [b"PGCOPY\n\xff\r\n\x00", struct.pack(">ii", 0, 0)]
    for pos, h, content in rows:
        out.append(struct.pack(">h", 3))
        out.append(struct.pack(">iq", 8, pos))
        out.append(struct.pack(">i", len(h)) + h)
        out.append(struct.pack(">i", len(content)) + content)
    out.append(struct.pack(">h", -1))
    return b"".join(out)


def records(start: int, stop: int) -> list[tuple[int, bytes, bytes]]:
    out = []
    for p in range(start, stop):
        content = f'{{"seq":{p},"note":"ü"}}'.encode()
        out.append((p, sha256(b"\x00" + content).digest(), content))
    return out


def test_a_block_folds_into_its_compact_range_and_inner_checkpoints():
    rows = records(64, 128)
    r = hash_block(copy_data(rows), 64, 128, inner=(70, 100))
    assert r.failure is None
    leaves = [h for _, h, _ in rows]
    assert r.compact == [root_of(leaves)]
    f = Frontier()
    f.extend(leaves[:6])
    assert r.inner[70] == f.hashes
    f.extend(leaves[6:36])
    assert r.inner[100] == f.hashes
    unaligned = hash_block(copy_data(records(10, 20)), 10, 20, want_leaves=True)
    assert unaligned.leaves == [h for _, h, _ in records(10, 20)]


def test_rows_out_of_heap_order_are_sorted_before_checking():
    rows = records(0, 16)
    shuffled = rows[8:] + rows[:8]
    assert (
        hash_block(copy_data(shuffled), 0, 16).compact == hash_block(copy_data(rows), 0, 16).compact
    )


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda rows: rows[:5] + rows[6:], (5, "missing")),
        (lambda rows: [*rows[:5], rows[5], *rows[5:]], (5, "duplicated")),
        (lambda rows: rows[:-1], (15, "missing")),
        (
            lambda rows: [*rows[:3], (3, rows[3][1], rows[3][2].replace(b"3", b"4")), *rows[4:]],
            (3, "altered"),
        ),
    ],
    ids=["deleted", "duplicated", "last-deleted", "altered"],
)
def test_a_damaged_block_names_the_first_bad_position(mutate, expected):
    r = hash_block(copy_data(mutate(records(0, 16))), 0, 16)
    assert r.failure is not None and r.failure[:2] == expected


def test_data_that_is_not_binary_copy_is_refused():
    assert hash_block(b"position,content\n", 0, 1).failure[1] == "unreadable"


@pytest.mark.parametrize(
    "damage", [lambda d: d + b"x", lambda d: d[:-3] + d[-2:], lambda d: d[:60]]
)
def test_truncated_or_trailing_copy_data_is_named_unreadable_not_raised(damage):
    r = hash_block(damage(copy_data(records(0, 4))), 0, 4)
    assert r.failure is not None and r.failure[1] == "unreadable"
