"""The Merkle tree against RFC 9162's recursive definitions, written out plainly here."""

from __future__ import annotations

import hashlib

import pytest

from oda_fed.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    node_hash,
    verify_consistency,
    verify_inclusion,
)


def _leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + str(i).encode()).digest() for i in range(n)]


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, over leaf hashes."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1."""
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1."""
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


SIZES = [*range(1, 20), 31, 32, 33, 64, 100]


@pytest.mark.parametrize("n", [0, *SIZES])
def test_roots_match_the_recursive_definition_at_every_size(n: int) -> None:
    d = _leaves(n)
    tree = MerkleTree(d)
    assert tree.root() == mth(d)
    for size in range(n + 1):
        assert tree.root(size) == mth(d[:size])
    assert MerkleTree().root() == EMPTY_ROOT


@pytest.mark.parametrize("n", SIZES)
def test_inclusion_proofs_match_and_verify(n: int) -> None:
    d = _leaves(n)
    tree = MerkleTree(d)
    for size in {1, n // 2 or 1, n}:
        root = tree.root(size)
        for m in range(size):
            proof = tree.inclusion_proof(m, size)
            assert proof == path(m, d[:size])
            assert verify_inclusion(d[m], m, size, proof, root)


@pytest.mark.parametrize("n", SIZES)
def test_consistency_proofs_match_and_verify(n: int) -> None:
    d = _leaves(n)
    tree = MerkleTree(d)
    for old in range(n + 1):
        proof = tree.consistency_proof(old)
        expected = [] if old in (0, n) else subproof(old, d, True)
        assert proof == expected
        assert verify_consistency(old, n, tree.root(old), tree.root(), proof)


def test_a_rewritten_entry_breaks_consistency_and_inclusion() -> None:
    d = _leaves(13)
    honest = MerkleTree(d)
    old_root = honest.root(8)
    rewritten = list(d)
    rewritten[5] = hashlib.sha256(b"\x00forged").digest()
    tampered = MerkleTree(rewritten)
    proof = tampered.consistency_proof(8)
    assert not verify_consistency(8, 13, old_root, tampered.root(), proof)
    # The rewritten leaf cannot be shown in the honest tree's head, nor the honest one in the new.
    assert not verify_inclusion(rewritten[5], 5, 13, tampered.inclusion_proof(5), honest.root())
    assert not verify_inclusion(d[5], 5, 13, tampered.inclusion_proof(5), tampered.root())


def test_a_truncated_log_cannot_prove_it_extends_its_old_head() -> None:
    d = _leaves(10)
    old_root = MerkleTree(d).root()
    shorter = MerkleTree(d[:7])
    with pytest.raises(ValueError, match="must be between 0 and 7"):
        shorter.consistency_proof(10)
    assert not verify_consistency(10, 7, old_root, shorter.root(), [])


def test_proofs_with_a_flipped_hash_or_a_wrong_index_fail() -> None:
    d = _leaves(11)
    tree = MerkleTree(d)
    proof = tree.inclusion_proof(6)
    bad = [*proof[:-1], bytes(32)]
    assert not verify_inclusion(d[6], 6, 11, bad, tree.root())
    assert not verify_inclusion(d[6], 7, 11, proof, tree.root())
    assert not verify_inclusion(d[6], 11, 11, proof, tree.root())
    cons = tree.consistency_proof(4)
    assert not verify_consistency(4, 11, tree.root(4), tree.root(), [*cons, bytes(32)])
    assert not verify_consistency(4, 11, tree.root(5), tree.root(), cons)
    assert not verify_consistency(4, 11, tree.root(4), tree.root(), [])
    assert not verify_consistency(5, 5, tree.root(5), tree.root(4), [])


def test_node_hash_is_domain_separated_from_leaves() -> None:
    a, b = _leaves(2)
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleTree([b"short"])
