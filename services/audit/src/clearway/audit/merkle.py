"""RFC 6962 / RFC 9162 Merkle tree hashing, compact ranges and proofs (pure).

Leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``
(RFC 6962 §2.1): the prefixes keep a leaf from ever passing for a node.
Proof generation follows RFC 9162 §2.1.3.1 / §2.1.4.1 and verification the
algorithms of §2.1.3.2 / §2.1.4.2 word for word.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from hashlib import sha256

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n > 1``), RFC 6962's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _pairs(level: Sequence[bytes]) -> list[bytes]:
    """Node hashes of consecutive pairs of ``level`` (an even number of hashes). One
    comprehension over the pairs: the per-node Python work is what costs here."""
    return [
        sha256(NODE_PREFIX + left + right).digest()
        for left, right in zip(level[::2], level[1::2], strict=True)
    ]


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes. Level by level, carrying an odd last node up unchanged,
    which gives the same tree as RFC 6962's recursive split at ``k``."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        level = _pairs(level[:-1] if odd is not None else level)
        if odd is not None:
            level.append(odd)
    return level[0]


#: A perfect subtree ``(level, index, hash)``: it covers leaves
#: ``[index * 2**level, (index + 1) * 2**level)``.
Subtree = tuple[int, int, bytes]


class Frontier:
    """The compact range ``[0, size)``: one perfect-subtree hash per set bit of
    ``size``, largest first. Enough to extend the tree and compute its root."""

    def __init__(
        self,
        size: int = 0,
        hashes: Sequence[bytes] = (),
        *,
        sink: list[Subtree] | None = None,
        sink_level: int = 0,
    ) -> None:
        """``sink``, when given, collects every perfect subtree of ``2**sink_level``
        leaves or more that appending completes (what proofs are later built from)."""
        if len(hashes) != size.bit_count():
            raise ValueError(f"a frontier of size {size} has {size.bit_count()} hashes")
        self.size = size
        self.sink, self.sink_level = sink, sink_level
        bits = [b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
        self._stack: list[tuple[int, bytes]] = list(zip(bits, hashes, strict=True))

    @property
    def hashes(self) -> list[bytes]:
        return [h for _, h in self._stack]

    def nodes(self) -> list[tuple[int, int, bytes]]:
        """``(start, size, hash)`` of each perfect subtree, left to right."""
        out, start = [], 0
        for level, h in self._stack:
            out.append((start, 1 << level, h))
            start += 1 << level
        return out

    def push(self, level: int, h: bytes) -> None:
        """Append a perfect subtree of ``2**level`` leaves; ``size`` must be aligned to it."""
        if self.size % (1 << level):
            raise ValueError("subtree not aligned with the frontier")
        self._stack.append((level, h))
        self.size += 1 << level
        sink, st = self.sink, self._stack
        if sink is not None and level >= self.sink_level:
            sink.append((level, (self.size >> level) - 1, h))
        while len(st) > 1 and st[-1][0] == st[-2][0]:
            (lv, r), (_, left) = st.pop(), st.pop()
            st.append((lv + 1, sha256(NODE_PREFIX + left + r).digest()))
            if sink is not None and lv + 1 >= self.sink_level:
                sink.append((lv + 1, (self.size >> (lv + 1)) - 1, st[-1][1]))

    def extend(self, leaves: Sequence[bytes]) -> None:
        """Append leaf hashes, hashing aligned perfect blocks a level at a time (fast)."""
        i, n = 0, len(leaves)
        while i < n:
            low = (self.size & -self.size).bit_length() - 1 if self.size else 62
            level = min(low, (n - i).bit_length() - 1, 16)
            block = 1 << level
            if self.sink is None or level <= self.sink_level:
                self.push(level, root_of(leaves[i : i + block]))
            else:  # keep the inner subtrees of the block that are large enough
                nodes, base = list(leaves[i : i + block]), self.size
                for lv in range(1, level):
                    nodes = _pairs(nodes)
                    if lv >= self.sink_level:
                        first = base >> lv
                        self.sink.extend((lv, first + j, h) for j, h in enumerate(nodes))
                self.push(level, _pairs(nodes)[0])
            i += block

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        r = self._stack[-1][1]
        for _, h in reversed(self._stack[:-1]):
            r = sha256(NODE_PREFIX + h + r).digest()
        return r

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)


class Pruned(LookupError):
    """A proof needs hashes of records that retention has removed."""


class NodeHasher:
    """MTH(D[a:b]) from known perfect subtrees (``nodes`` maps ``(start, size)`` to a
    hash: stored subtrees, a retention cut's compact range) and the leaf hashes a
    proof still needs (``leaves`` maps a position to its leaf hash)."""

    def __init__(
        self, nodes: Mapping[tuple[int, int], bytes], leaves: Mapping[int, bytes]
    ) -> None:
        self.nodes, self.leaves = nodes, leaves

    def __call__(self, a: int, b: int) -> bytes:
        if (a, b - a) in self.nodes:
            return self.nodes[(a, b - a)]
        if b - a == 1:
            if a not in self.leaves:
                raise Pruned(f"no leaf hash at position {a} (removed by retention?)")
            return self.leaves[a]
        k = split_point(b - a)
        return node_hash(self(a, a + k), self(a + k, b))


def proof_reads(
    ranges: Iterable[tuple[int, int]], unit: int, known: Container[tuple[int, int]] = ()
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """What to read to hash ``ranges`` (each ``[a, b)`` as an RFC 9162 proof asks for it):
    the aligned perfect subtrees of ``unit`` leaves or more, as ``(start, size)``, and the
    spans ``[a, b)`` of fewer leaves than ``unit`` whose leaf hashes are needed. Subtrees
    in ``known`` are skipped. MTH splits at the largest power of two below the size, so
    a range of ``n`` leaves costs O(log n) subtrees plus at most one partial span."""
    nodes: list[tuple[int, int]] = []
    spans: list[tuple[int, int]] = []

    def cover(a: int, b: int) -> None:
        n = b - a
        if (a, n) in known:
            return
        if n >= unit and n & (n - 1) == 0 and a % n == 0:
            nodes.append((a, n))
        elif n <= unit:
            spans.append((a, b))
        else:
            k = split_point(n)
            cover(a, a + k)
            cover(a + k, b)

    for a, b in ranges:
        cover(a, b)
    return nodes, spans


def ranges_asked(proof: Callable[[Callable[[int, int], bytes]], object]) -> list[tuple[int, int]]:
    """The ranges ``[a, b)`` whose MTH ``proof(mth)`` asks for (the proof's shape only)."""
    asked: list[tuple[int, int]] = []

    def record(a: int, b: int) -> bytes:
        asked.append((a, b))
        return EMPTY_ROOT

    proof(record)
    return asked


def inclusion_proof(m: int, n: int, mth: Callable[[int, int], bytes], off: int = 0) -> list[bytes]:
    """PATH(m, D[off:off+n]) of RFC 9162 §2.1.3.1."""
    if n == 1:
        return []
    k = split_point(n)
    if m < k:
        return [*inclusion_proof(m, k, mth, off), mth(off + k, off + n)]
    return [*inclusion_proof(m - k, n - k, mth, off + k), mth(off, off + k)]


def consistency_proof(m: int, n: int, mth: Callable[[int, int], bytes]) -> list[bytes]:
    """PROOF(m, D[0:n]) of RFC 9162 §2.1.4.1 (``0 < m <= n``)."""

    def sub(m: int, n: int, b: bool, off: int) -> list[bytes]:
        if m == n:
            return [] if b else [mth(off, off + n)]
        k = split_point(n)
        if m <= k:
            return [*sub(m, k, b, off), mth(off + k, off + n)]
        return [*sub(m - k, n - k, False, off + k), mth(off, off + k)]

    return sub(m, n, True, 0) if 0 < m < n else []


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2 (sizes equal or the first empty are the trivial cases)."""
    if first > second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0
