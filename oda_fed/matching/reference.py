"""Plain NumPy/Python twins of :mod:`oda_fed.matching.kernels`, written for clarity, for tests.

Each function has the same name, arguments and results as its kernel; :func:`candidate_keys`
twins the whole scan (``candidates.candidate_keys``, which runs ``kernels.scan_round`` in
rounds). Bits are unpacked with ``np.unpackbits`` and ratios compared as exact
:class:`fractions.Fraction` values, so these twins share no tricks (popcount windows from
integer bounds, tiles, float quotients, key inversion) with the kernels. :func:`dice_candidates`
is the twin of the public wrapper and compares the ``float64`` score with the threshold
directly, which is the documented meaning of the threshold.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from oda_fed.matching.candidates import Candidates


def _bits(clks: np.ndarray) -> np.ndarray:
    """0/1 matrix of shape (n, 64 * words); bit order does not matter for counting."""
    return np.unpackbits(np.ascontiguousarray(clks).view(np.uint8), axis=-1)


def popcounts(clks: np.ndarray) -> np.ndarray:
    """Set bits in each row, as ``int64``."""
    return _bits(clks).sum(axis=1, dtype=np.int64).reshape(clks.shape[0])


def intersection_count(a: np.ndarray, i: int, b: np.ndarray, j: int) -> int:
    """Set bits shared by ``a[i]`` and ``b[j]``."""
    return int(np.logical_and(_bits(a[i]), _bits(b[j])).sum())


def _dice(inter: int, total: int) -> Fraction:
    return Fraction(0) if total == 0 else Fraction(2 * inter, total)


def dice_pair(x: np.ndarray, y: np.ndarray) -> float:
    """Dice coefficient of two 1-D rows; 0.0 when both are empty."""
    inter = int(np.logical_and(_bits(x), _bits(y)).sum())
    return float(_dice(inter, int(_bits(x).sum() + _bits(y).sum())))


def popcount_window(pa: int, num: int, den: int) -> tuple[int, int]:
    """``[lo, hi]``: the real-number window ``pa t / (2 - t) <= pb <= pa (2 - t) / t`` rounded
    inwards, with ``t = num / den`` as a Fraction; ``(1, 0)`` (empty) when ``pa == 0``."""
    if pa == 0:
        return 1, 0
    t = Fraction(num, den)
    return math.ceil(pa * t / (2 - t)), math.floor(pa * (2 - t) / t)


def popcount_windows(max_pop: int, num: int, den: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`popcount_window` of every popcount ``0 .. max_pop``."""
    windows = [popcount_window(p, num, den) for p in range(max_pop + 1)]
    return (
        np.array([w[0] for w in windows], dtype=np.int64),
        np.array([w[1] for w in windows], dtype=np.int64),
    )


def score_rank(inter: int, total: int, score_bits: int) -> int:
    """``2**K - floor(Fraction(2 inter, total) * 2**K)``, exactly."""
    return (1 << score_bits) - math.floor(Fraction(2 * inter, total) * (1 << score_bits))


def _passing(a: np.ndarray, b: np.ndarray, num: int, den: int) -> list[tuple[int, int, int, int]]:
    """``(i, j, inter, total)`` of every pair with Dice >= num/den, in (i, j) order."""
    pop_a, pop_b = popcounts(a), popcounts(b)
    found = []
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            total = int(pop_a[i] + pop_b[j])
            inter = intersection_count(a, i, b, j)
            if total > 0 and _dice(inter, total) >= Fraction(num, den):
                found.append((i, j, inter, total))
    return found


def candidate_keys(
    a: np.ndarray,
    b: np.ndarray,
    *,
    num: int,
    den: int,
    score_bits: int,
    right_bits: int,
    pair_bits: int,
) -> np.ndarray:
    """Keys of every passing pair, by brute force, in (i, j) order: the twin of
    :func:`oda_fed.matching.candidates.candidate_keys` and so of the rounds of
    :func:`oda_fed.matching.kernels.scan_round` that it drives."""
    keys = []
    for i, j, inter, total in _passing(a, b, num, den):
        key = (i << right_bits) | j
        if score_bits > 0:
            key |= score_rank(inter, total, score_bits) << pair_bits
        keys.append(key)
    return np.array(keys, dtype=np.int64)


def decode_keys(
    a: np.ndarray,
    b: np.ndarray,
    keys: np.ndarray,
    score_bits: int,
    right_bits: int,
    pair_bits: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unpack each key into (left, right) and score that pair from the CLKs."""
    left, right, score = [], [], []
    for key in keys.tolist():
        pair = key % (1 << pair_bits)
        i, j = pair >> right_bits, pair % (1 << right_bits)
        total = int(popcounts(a[i : i + 1])[0] + popcounts(b[j : j + 1])[0])
        left.append(i)
        right.append(j)
        score.append(float(_dice(intersection_count(a, i, b, j), total)))
    return (
        np.array(left, dtype=np.int64),
        np.array(right, dtype=np.int64),
        np.array(score, dtype=np.float64),
    )


def top_k_positions(left: np.ndarray, n_left: int, k: int) -> np.ndarray:
    """Positions of the first ``k`` occurrences of each left value."""
    seen: dict[int, int] = {}
    keep = []
    for p, i in enumerate(left.tolist()):
        seen[i] = seen.get(i, 0) + 1
        if seen[i] <= k:
            keep.append(p)
    return np.array(keep, dtype=np.int64)


def dice_candidates(
    a: np.ndarray, b: np.ndarray, *, threshold: float, top_k: int | None = None
) -> Candidates:
    """Twin of the public wrapper: pairs whose ``float64`` Dice is ``>= threshold``, sorted
    (score desc, left, right), then at most ``top_k`` per left row, the first in that order."""
    bits_a, bits_b = _bits(a).astype(np.int64), _bits(b).astype(np.int64)
    inter = bits_a @ bits_b.T
    total = bits_a.sum(axis=1)[:, None] + bits_b.sum(axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * inter / total, 0.0)
    left, right = np.nonzero(dice >= threshold)
    score = dice[left, right]
    order = np.lexsort((right, left, -score))
    left, right, score = left[order], right[order], score[order]
    if top_k is not None:
        rank_in_row = np.zeros(len(left), dtype=np.int64)
        for row in np.unique(left):
            at = np.flatnonzero(left == row)
            rank_in_row[at] = np.arange(len(at))
        kept = rank_in_row < top_k
        left, right, score = left[kept], right[kept], score[kept]
    return Candidates(
        left=left.astype(np.int64),
        right=right.astype(np.int64),
        score=score.astype(np.float64),
    )
