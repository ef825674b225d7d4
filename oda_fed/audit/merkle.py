"""The Merkle tree over an audit log, as RFC 9162 (Certificate Transparency 2.0) defines it.

Each log entry's ``hash`` is already the RFC 9162 leaf hash ``SHA-256(0x00 || entry)``, so the
tree is built on the stored hashes unchanged. A tree head (size and root) commits to every entry
before it: a later tree whose first ``size`` leaves differ has another root at that size, and a
*consistency proof* shows, in O(log n) hashes, that a larger tree extends a smaller one. An
*inclusion proof* shows that one entry is in a tree of a given head.

Proof generation and verification follow RFC 9162 sections 2.1.3 and 2.1.4 step by step; the
tests check them against the recursive definitions of section 2.1.1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = ["EMPTY_ROOT", "MerkleTree", "verify_consistency", "verify_inclusion"]

#: The root of an empty tree: SHA-256 of nothing.
EMPTY_ROOT = hashlib.sha256(b"").digest()
_NODE_PREFIX = b"\x01"


def node_hash(left: bytes, right: bytes) -> bytes:
    """An interior node: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): where RFC 9162 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """The leaves of one log and every complete subtree over them, for heads and proofs.

    Appending is O(1) amortised; a root or a proof for any earlier size costs O(log n) hashes,
    because every complete, aligned power-of-two subtree is kept (about 2n hashes in all).

    Examples
    --------
    >>> tree = MerkleTree([bytes(32), bytes(32)])
    >>> tree.size, len(tree.root())
    (2, 32)
    """

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        """How many leaves the tree holds."""
        return len(self._levels[0])

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        return self._levels[0][index]

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (32 bytes) at the end."""
        if len(leaf) != 32:
            raise ValueError("a leaf hash is 32 bytes")
        self._levels[0].append(leaf)
        level = 0
        while len(self._levels[level]) % 2 == 0:
            below = self._levels[level]
            if level + 1 == len(self._levels):
                self._levels.append([])
            self._levels[level + 1].append(node_hash(below[-2], below[-1]))
            level += 1

    def _hash(self, start: int, end: int) -> bytes:
        """MTH of leaves ``[start, end)``; ``start`` is aligned as RFC 9162's recursion leaves it."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:  # a complete subtree: stored
            level = n.bit_length() - 1
            return self._levels[level][start >> level]
        k = _split(n)
        return node_hash(self._hash(start, start + k), self._hash(start + k, end))

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} is outside the tree (0..{self.size})")
        return size

    def root(self, size: int | None = None) -> bytes:
        """The tree head's root for the first ``size`` leaves (all of them by default)."""
        return self._hash(0, self._check_size(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 ``PATH(index, D[0:size])``: the audit path of one leaf."""
        size = self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of size {size}")
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:  # walk down, collecting the sibling of each step from the top
            k = _split(end - start)
            if index < start + k:
                path.append(self._hash(start + k, end))
                end = start + k
            else:
                path.append(self._hash(start, start + k))
                start += k
        return path[::-1]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 ``PROOF(old_size, D[0:new_size])``: that the larger tree extends the smaller."""
        new_size = self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ValueError(f"old size {old_size} must be between 0 and {new_size}")
        if old_size in (0, new_size):
            return []
        path: list[bytes] = []
        start, end, m, complete = 0, new_size, old_size, True
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                path.append(self._hash(start + k, end))
                end = start + k
            else:
                path.append(self._hash(start, start + k))
                start, m, complete = start + k, m - k, False
        if not complete:
            path.append(self._hash(start, end))
        return path[::-1]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: whether ``proof`` shows leaf ``index`` in the tree ``(size, root)``.

    Examples
    --------
    >>> tree = MerkleTree([bytes([i]) * 32 for i in range(5)])
    >>> verify_inclusion(tree.leaf(3), 3, 5, tree.inclusion_proof(3), tree.root())
    True
    """
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2: whether ``proof`` shows tree ``(new_size, new_root)`` extends
    ``(old_size, old_root)``. Equal sizes need an empty proof and equal roots; any tree extends the
    empty one.

    Examples
    --------
    >>> tree = MerkleTree([bytes([i]) * 32 for i in range(7)])
    >>> verify_consistency(3, 7, tree.root(3), tree.root(), tree.consistency_proof(3))
    True
    """
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    path = list(proof)
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0
