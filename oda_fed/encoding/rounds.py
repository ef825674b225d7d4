"""A per-round keyed transformation of what a node uploads, so CLKs cannot be followed across rounds.

Within a round every node applies the same secret bit permutation to its CLKs and re-keys its
exact tokens under a round key, so Dice scores and token equality between partners are exactly
as before. From one round to the next the permutation and the token key change, so the same
record uploads unrelated bytes, and the coordinator (which never holds the secret) cannot tell
that two rounds' CLKs belong to one record. A project that agrees ``stable_entity_ids`` wants the
coordinator to follow records (its index compares CLKs across rounds), and sends record keys;
for it nothing is transformed.

Both keys are derived with HKDF from the linkage secret, under the project name and the round
id, with their own ``info`` prefixes (:func:`oda_fed.encoding.keys.derive_key`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

import numpy as np

from oda_fed.encoding.evidence import FILTER_BITS, Evidence
from oda_fed.encoding.keys import derive_key

__all__ = ["RoundTransform"]

PERMUTATION_INFO = b"oda-fed/round-permutation/v1/"
TOKENS_INFO = b"oda-fed/round-tokens/v1/"
EVIDENCE_INFO = b"oda-fed/round-evidence/v1/"


def _permutation(key: bytes, bits: int) -> np.ndarray:
    # Sorting the positions by a keyed hash of each gives a permutation no one can predict
    # without the key, and the same one at every node.
    rank = [hmac.new(key, i.to_bytes(4, "big"), hashlib.sha256).digest() for i in range(bits)]
    return np.array(sorted(range(bits), key=rank.__getitem__), dtype=np.int64)


def _permute_bits(clks: np.ndarray, permutation: np.ndarray, out: np.ndarray) -> None:
    """Set bit ``j`` of each row of ``out`` to bit ``permutation[j]`` of the row of ``clks``:
    hardening's XOR of taps with one tap per output bit."""
    from oda_fed.encoding.hardening_kernels import xor_taps  # Numba, loaded when first used

    xor_taps(clks, np.ascontiguousarray(permutation, dtype=np.int64).reshape(-1, 1), out)


class RoundTransform:
    """The keyed transformation of one round: a bit permutation and a token key.

    Examples
    --------
    >>> t = RoundTransform(secret, context="project", round_id="r1", bits=1024)  # doctest: +SKIP
    >>> moved = t.clks(clks)  # doctest: +SKIP
    """

    def __init__(self, secret: bytes, *, context: str, round_id: str, bits: int) -> None:
        if bits <= 0 or bits % 64:
            raise ValueError(f"a CLK is a whole number of 64-bit words, not {bits} bits")
        info = round_id.encode("utf-8")
        order_key = derive_key(secret, context=context, info=PERMUTATION_INFO + info)
        self._token_key = derive_key(secret, context=context, info=TOKENS_INFO + info)
        self._evidence_key = derive_key(secret, context=context, info=EVIDENCE_INFO + info)
        self.permutation = _permutation(order_key, bits)
        self.bits = bits

    def clks(self, clks: np.ndarray) -> np.ndarray:
        """CLKs (rows of little-endian ``uint64`` words) with bit ``j`` taken from bit
        ``permutation[j]``; popcounts, and so every Dice score within the round, are unchanged."""
        words = np.ascontiguousarray(clks, dtype=np.uint64)
        if words.ndim != 2 or words.shape[1] * 64 != self.bits:
            raise ValueError(f"expected CLKs of {self.bits} bits, got shape {words.shape}")
        out = np.empty_like(words)
        _permute_bits(words, self.permutation, out)
        return out

    def tokens(self, tokens: Mapping[str, Sequence[bytes | None]]) -> dict[str, list[bytes | None]]:
        """Exact tokens re-keyed for the round: equal tokens stay equal within it; a missing
        value stays missing."""
        key = self._token_key

        def rekey(field: bytes, token: bytes | None) -> bytes | None:
            if not token:
                return token
            return hmac.new(key, field + b"\x00" + token, hashlib.sha256).digest()

        return {f: [rekey(f.encode("utf-8"), t) for t in values] for f, values in tokens.items()}

    def evidence(self, evidence: Evidence) -> Evidence:
        """Field evidence moved for the round: every field filter under one bit permutation,
        every token re-keyed under one round key (a missing token stays 0; the ``@names:born``
        columns stay comparable with each other)."""
        key = self._evidence_key
        order = _permutation(key, FILTER_BITS)
        filters = {}
        for name, words in evidence.filters.items():
            filters[name] = np.empty_like(words)
            _permute_bits(np.ascontiguousarray(words, dtype=np.uint64), order, filters[name])
        tokens = {}
        for name, column in evidence.tokens.items():
            distinct, inverse = np.unique(column, return_inverse=True)
            moved = np.zeros(len(distinct), dtype=np.uint64)
            for i, value in enumerate(distinct.tolist()):
                if value:
                    digest = hashlib.blake2b(value.to_bytes(8, "little"), key=key, digest_size=8)
                    moved[i] = int.from_bytes(digest.digest(), "little") or 1
            tokens[name] = moved[inverse.reshape(-1)]
        return Evidence(filters=filters, tokens=tokens)
