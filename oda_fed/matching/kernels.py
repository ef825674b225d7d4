"""Numba kernels over bit-packed CLKs: popcounts and Dice candidate pairs.

Only ``@njit`` functions over arrays live here (plus the popcount intrinsic they share), so that
Numba's on-disk cache, which tracks this file alone, is invalidated whenever a kernel changes.
Every public kernel has a plain-Python twin of the same name in :mod:`oda_fed.matching.reference`.

CLKs are ``uint64[:, ::1]`` arrays: row ``r`` is one CLK, bit ``b`` lives in word ``b // 64`` at
position ``b % 64``. Counts are ``int64`` throughout: Numba promotes mixed ``uint64``/``int64``
arithmetic to ``float64``, which would make the threshold test inexact.

The threshold is a rational ``num / den`` and a pair ``(i, j)`` passes when
``2 * inter * den >= num * (pa + pb)``: integers only, no division per pair. Pairs whose two CLKs
are both all-zero have Dice 0 by definition and never pass (every threshold is positive).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic


@intrinsic
def _popcount64(typingctx, word):
    """Number of set bits in one 64-bit word, via LLVM's ``ctpop`` (one ``popcnt`` on x86-64)."""
    if not isinstance(word, types.Integer) or word.bitwidth != 64:
        return None
    sig = types.int64(word)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        ctpop = builder.module.declare_intrinsic("llvm.ctpop", [i64])
        return builder.call(ctpop, [args[0]])

    return sig, codegen


@njit(cache=True, parallel=True)
def popcounts(clks: np.ndarray) -> np.ndarray:
    """Set bits in each row of ``clks`` (``uint64[:, ::1]``), as ``int64[n]``.

    Examples
    --------
    >>> popcounts(np.array([[0b1011, 1], [0, 0]], dtype=np.uint64)).tolist()
    [4, 0]
    """
    n, words = clks.shape
    out = np.empty(n, dtype=np.int64)
    for i in prange(n):
        total = 0
        for w in range(words):
            total += _popcount64(clks[i, w])
        out[i] = total
    return out


@njit(cache=True)
def intersection_count(a: np.ndarray, i: int, b: np.ndarray, j: int) -> int:
    """Set bits shared by row ``i`` of ``a`` and row ``j`` of ``b``: ``popcount(a[i] & b[j])``."""
    total = 0
    for w in range(a.shape[1]):
        total += _popcount64(a[i, w] & b[j, w])
    return total


@njit(cache=True)
def dice_pair(x: np.ndarray, y: np.ndarray) -> float:
    """Dice coefficient ``2 |x & y| / (|x| + |y|)`` of two ``uint64`` rows; 0.0 if both empty."""
    inter = 0
    total = 0
    for w in range(x.shape[0]):
        inter += _popcount64(x[w] & y[w])
        total += _popcount64(x[w]) + _popcount64(y[w])
    if total == 0:
        return 0.0
    return 2.0 * inter / total


@njit(cache=True)
def _reachable(pa: int, pb: int, num: int, den: int) -> bool:
    """Whether the popcounts alone allow Dice >= num/den (Dice <= 2 min(pa, pb) / (pa + pb))."""
    total = pa + pb
    # Both all-zero: Dice is 0 by definition, and 0 >= 0 in the test below would wrongly pass it.
    if total == 0:
        return False
    return 2 * min(pa, pb) * den >= num * total


@njit(cache=True, parallel=True)
def count_candidates(
    a: np.ndarray, b: np.ndarray, pop_a: np.ndarray, pop_b: np.ndarray, num: int, den: int
) -> np.ndarray:
    """Pass 1: for each row of ``a``, how many rows of ``b`` reach Dice >= ``num / den``.

    Returns ``int64[len(a)]``. Each parallel iteration writes only its own element.
    """
    n_a = a.shape[0]
    n_b = b.shape[0]
    counts = np.zeros(n_a, dtype=np.int64)
    for i in prange(n_a):
        pa = pop_a[i]
        found = 0
        for j in range(n_b):
            pb = pop_b[j]
            if not _reachable(pa, pb, num, den):
                continue
            if 2 * intersection_count(a, i, b, j) * den >= num * (pa + pb):
                found += 1
        counts[i] = found
    return counts


@njit(cache=True, parallel=True)
def fill_candidates(
    a: np.ndarray,
    b: np.ndarray,
    pop_a: np.ndarray,
    pop_b: np.ndarray,
    num: int,
    den: int,
    offsets: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    score: np.ndarray,
) -> None:
    """Pass 2: write the passing pairs of row ``i`` into ``[offsets[i], offsets[i + 1])``.

    ``left``, ``right`` (``int64``) and ``score`` (``float64``) are preallocated with
    ``offsets[-1]`` elements; within a row, pairs are written in ascending ``right`` order. The test
    must be the same as in :func:`count_candidates` so that each row fills its slice exactly.
    """
    n_a = a.shape[0]
    n_b = b.shape[0]
    for i in prange(n_a):
        pa = pop_a[i]
        k = offsets[i]
        for j in range(n_b):
            pb = pop_b[j]
            if not _reachable(pa, pb, num, den):
                continue
            inter = intersection_count(a, i, b, j)
            if 2 * inter * den >= num * (pa + pb):
                left[k] = i
                right[k] = j
                score[k] = 2.0 * inter / (pa + pb)
                k += 1


@njit(cache=True)
def candidate_pairs(
    a: np.ndarray, b: np.ndarray, num: int, den: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs with Dice >= ``num / den``, as ``(left, right, score)`` in (left, right) order.

    Runs the two passes: count per left row, prefix-sum the counts into offsets, then fill the
    preallocated columns. Sorting by score is left to the caller
    (:func:`oda_fed.matching.dice_candidates`, which also checks the inputs).

    Examples
    --------
    >>> a = np.array([[0b1111], [0b0001]], dtype=np.uint64)
    >>> left, right, score = candidate_pairs(a, a, 4, 5)
    >>> left.tolist(), right.tolist(), score.tolist()
    ([0, 1], [0, 1], [1.0, 1.0])
    """
    pop_a = popcounts(a)
    pop_b = popcounts(b)
    counts = count_candidates(a, b, pop_a, pop_b, num, den)
    offsets = np.zeros(a.shape[0] + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(counts)
    total = offsets[-1]
    left = np.empty(total, dtype=np.int64)
    right = np.empty(total, dtype=np.int64)
    score = np.empty(total, dtype=np.float64)
    fill_candidates(a, b, pop_a, pop_b, num, den, offsets, left, right, score)
    return left, right, score
