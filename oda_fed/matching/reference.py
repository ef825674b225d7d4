"""Plain NumPy/Python twins of :mod:`oda_fed.matching.kernels`, written for clarity, for tests.

Each function has the same name, arguments and results as its kernel. Bits are unpacked with
``np.unpackbits`` and ratios compared as exact :class:`fractions.Fraction` values, so these
twins share no tricks (popcount bounds, integer cross-multiplication) with the kernels.
:func:`dice_candidates` is the twin of the public wrapper and compares the ``float64`` score with
the threshold directly, which is the documented meaning of the threshold.
"""

from __future__ import annotations

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


def _passing(a: np.ndarray, b: np.ndarray, num: int, den: int) -> list[tuple[int, int, float]]:
    pop_a, pop_b = popcounts(a), popcounts(b)
    found = []
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            total = int(pop_a[i] + pop_b[j])
            dice = _dice(intersection_count(a, i, b, j), total)
            if total > 0 and dice >= Fraction(num, den):
                found.append((i, j, float(dice)))
    return found


def count_candidates(
    a: np.ndarray, b: np.ndarray, pop_a: np.ndarray, pop_b: np.ndarray, num: int, den: int
) -> np.ndarray:
    """For each row of ``a``, the number of rows of ``b`` with Dice >= ``num / den``."""
    counts = np.zeros(a.shape[0], dtype=np.int64)
    for i, _, _ in _passing(a, b, num, den):
        counts[i] += 1
    return counts


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
    """Write the passing pairs in (left, right) order into the preallocated columns."""
    for k, (i, j, dice) in enumerate(_passing(a, b, num, den)):
        left[k], right[k], score[k] = i, j, dice


def candidate_pairs(
    a: np.ndarray, b: np.ndarray, num: int, den: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs with Dice >= ``num / den`` as ``(left, right, score)`` in (left, right) order."""
    found = _passing(a, b, num, den)
    return (
        np.array([f[0] for f in found], dtype=np.int64),
        np.array([f[1] for f in found], dtype=np.int64),
        np.array([f[2] for f in found], dtype=np.float64),
    )


def dice_candidates(a: np.ndarray, b: np.ndarray, *, threshold: float) -> Candidates:
    """Twin of the public wrapper: pairs whose ``float64`` Dice is ``>= threshold``, sorted."""
    bits_a, bits_b = _bits(a).astype(np.int64), _bits(b).astype(np.int64)
    inter = bits_a @ bits_b.T
    total = bits_a.sum(axis=1)[:, None] + bits_b.sum(axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * inter / total, 0.0)
    left, right = np.nonzero(dice >= threshold)
    score = dice[left, right]
    order = np.lexsort((right, left, -score))
    return Candidates(
        left=left[order].astype(np.int64),
        right=right[order].astype(np.int64),
        score=score[order].astype(np.float64),
    )
