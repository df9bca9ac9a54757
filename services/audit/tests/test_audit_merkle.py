"""The Merkle log follows RFC 6962 / RFC 9162 exactly (pure, no I/O)."""

from __future__ import annotations

from hashlib import sha256

import pytest

from clearway.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    NodeHasher,
    Pruned,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    proof_reads,
    ranges_asked,
    root_of,
    split_point,
    verify_consistency,
    verify_inclusion,
)

# RFC 6962 reference inputs used by the certificate-transparency test suites.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 as written, recursively."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def hashes(n: int) -> list[bytes]:
    return [leaf_hash(f"leaf {i}".encode()) for i in range(n)]


def test_leaves_and_nodes_are_domain_separated():
    assert leaf_hash(b"x") == sha256(b"\x00x").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert EMPTY_ROOT == sha256(b"").digest()


def test_the_root_of_the_reference_tree_is_the_published_one():
    leaves = [leaf_hash(x) for x in CT_LEAVES]
    assert root_of(leaves[:1]).hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert root_of(leaves).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )


@pytest.mark.parametrize("n", [*range(0, 40), 255, 256, 257, 1000])
def test_level_by_level_and_compact_range_roots_equal_the_recursive_definition(n):
    leaves = hashes(n)
    want = mth(leaves)
    assert root_of(leaves) == want
    one_by_one = Frontier()
    for h in leaves:
        one_by_one.push(0, h)
    assert one_by_one.root() == want
    bulk = Frontier()
    for chunk in (leaves[:3], leaves[3:100], leaves[100:]):
        bulk.extend(chunk)
    assert bulk.root() == want and bulk.size == n
    assert Frontier(n, bulk.hashes).root() == want


def test_a_frontier_refuses_a_hash_count_that_does_not_match_its_size():
    with pytest.raises(ValueError):
        Frontier(5, [b"x" * 32])


@pytest.mark.parametrize("n", range(1, 34))
def test_every_inclusion_proof_verifies_and_a_wrong_leaf_does_not(n):
    leaves = hashes(n)
    root = mth(leaves)
    get = NodeHasher({}, dict(enumerate(leaves)))
    for m in range(n):
        proof = inclusion_proof(m, n, get)
        assert verify_inclusion(m, n, leaves[m], proof, root)
        assert not verify_inclusion(m, n, leaf_hash(b"forged"), proof, root)
        if n > 1:
            assert not verify_inclusion((m + 1) % n, n, leaves[m], proof, root)


@pytest.mark.parametrize("n", range(1, 34))
def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not(n):
    leaves = hashes(n)
    get = NodeHasher({}, dict(enumerate(leaves)))
    for m in range(1, n + 1):
        proof = consistency_proof(m, n, get)
        assert verify_consistency(m, n, mth(leaves[:m]), mth(leaves), proof)
        forged = mth([leaf_hash(b"forged"), *leaves[1:m]])
        assert not verify_consistency(m, n, forged, mth(leaves), proof)


def test_proofs_still_work_after_a_prefix_was_pruned_when_the_compact_range_is_kept():
    leaves = hashes(23)
    cut = 13
    prefix = Frontier()
    prefix.extend(leaves[:cut])
    known = {(s, k): h for s, k, h in prefix.nodes()}
    get = NodeHasher(known, {i: leaves[i] for i in range(cut, 23)})
    root = mth(leaves)
    for m in range(cut, 23):
        assert verify_inclusion(m, 23, leaves[m], inclusion_proof(m, 23, get), root)
    with pytest.raises(Pruned):
        inclusion_proof(3, 23, get)


@pytest.mark.parametrize("steps", [[1000], [5, 300, 77, 1, 700], [256, 256, 512, 3]])
def test_a_frontier_keeps_exactly_the_perfect_subtrees_it_completes(steps):
    leaves, sink, got = hashes(sum(steps)), [], 0
    f = Frontier(sink=sink, sink_level=4)
    for n in steps:
        f.extend(leaves[got : got + n])
        got += n
        f = Frontier(f.size, f.hashes, sink=sink, sink_level=4)  # as each checkpoint resumes
    want = {
        (lv, i, mth(leaves[i << lv : (i + 1) << lv]))
        for lv in range(4, got.bit_length())
        for i in range(got >> lv)
    }
    assert sorted(sink) == sorted(want)


@pytest.mark.parametrize("n", [1, 16, 17, 100, 255, 256, 257, 1000])
def test_proofs_from_stored_subtrees_read_few_leaf_hashes_and_verify(n):
    leaves, unit = hashes(n), 16
    sink: list = []
    Frontier(sink=sink, sink_level=4).extend(leaves)
    stored = {(i << lv, 1 << lv): h for lv, i, h in sink}
    root = mth(leaves)
    for m in range(n):

        def proof(get, m=m):
            return [get(m, m + 1), *inclusion_proof(m, n, get)]

        nodes, spans = proof_reads(ranges_asked(proof), unit)
        assert all(node in stored for node in nodes)
        read = {p for a, b in spans for p in range(a, b)}
        assert len(read) <= 2 * unit  # the leaf's own span and one partial span
        leaf, *path = proof(NodeHasher(stored, {p: leaves[p] for p in read}))
        assert verify_inclusion(m, n, leaf, path, root)
    for m in range(1, n + 1):
        nodes, spans = proof_reads(
            ranges_asked(lambda get, m=m: consistency_proof(m, n, get)), unit
        )
        read = {p for a, b in spans for p in range(a, b)}
        assert len(read) <= 2 * unit
        path = consistency_proof(m, n, NodeHasher(stored, {p: leaves[p] for p in read}))
        assert verify_consistency(m, n, mth(leaves[:m]), root, path)
