"""Dice candidate pairs between two sets of CLKs: input checks, threshold, kernel call, sort.

The threshold semantics are exact and match what a user sees: a pair is a candidate when its
reported ``score`` (the Dice coefficient rounded to ``float64``) is ``>= threshold``. The kernel
tests this with integers only, using the rational :func:`threshold_ratio` returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from oda_fed.errors import InputDataError
from oda_fed.matching import kernels


class MatchingInputError(InputDataError, ValueError):
    """Arrays or parameters given to the matching engine have the wrong type, shape or range.

    Messages name dtypes, shapes and counts only, never values, so they are safe to log.
    """


@dataclass(frozen=True)
class Candidates:
    """Scored candidate pairs between CLK arrays ``a`` and ``b``.

    Sorted by ``score`` descending, then ``left`` ascending, then ``right`` ascending.

    Attributes
    ----------
    left : numpy.ndarray
        ``int64`` row indices into ``a``.
    right : numpy.ndarray
        ``int64`` row indices into ``b``.
    score : numpy.ndarray
        ``float64`` Dice coefficients.
    """

    left: np.ndarray
    right: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.score.shape[0])


def check_clks(clks: np.ndarray, *, name: str) -> None:
    """Raise :class:`MatchingInputError` unless ``clks`` is a C-contiguous 2-D ``uint64`` array.

    Never copies: a silent copy of a large CLK array would hide a costly mistake upstream.

    Examples
    --------
    >>> check_clks(np.zeros((3, 16), dtype=np.uint64), name="a")
    """
    if not isinstance(clks, np.ndarray):
        raise MatchingInputError(f"{name}: expected a numpy array, got {type(clks).__name__}")
    if clks.dtype != np.uint64:
        raise MatchingInputError(
            f"{name}: expected dtype uint64 (bit-packed CLKs), got {clks.dtype}"
        )
    if clks.ndim != 2:
        raise MatchingInputError(
            f"{name}: expected a 2-D array (records x 64-bit words), got {clks.ndim}-D"
        )
    if not clks.flags.c_contiguous:
        raise MatchingInputError(
            f"{name}: expected a C-contiguous array; pass np.ascontiguousarray({name}) if a copy "
            "is intended"
        )
    if clks.shape[1] == 0:
        raise MatchingInputError(f"{name}: CLKs have 0 words; expected at least one 64-bit word")


def _check_threshold(threshold: float) -> float:
    numeric = int | float | np.integer | np.floating
    if isinstance(threshold, bool) or not isinstance(threshold, numeric):
        raise MatchingInputError(f"threshold must be a number, got {type(threshold).__name__}")
    value = float(threshold)
    if not 0.0 < value <= 1.0:
        raise MatchingInputError(f"threshold must satisfy 0 < threshold <= 1, got {value!r}")
    return value


def threshold_ratio(threshold: float, *, words: int) -> tuple[int, int]:
    """The rational ``num / den`` the kernel compares Dice against, for CLKs of ``words`` words.

    It is the smallest fraction with denominator at most ``128 * words`` (the largest possible
    ``pa + pb``) whose ``float64`` value is ``>= threshold``. Every Dice value is such a fraction,
    so ``dice >= num / den`` holds exactly when ``float(dice) >= threshold``: a pair whose score
    prints as the threshold is always kept. ``den`` is small, so the kernel's integer products
    cannot overflow.

    Examples
    --------
    >>> threshold_ratio(0.8, words=16)
    (4, 5)
    >>> threshold_ratio(2 / 3, words=16)
    (2, 3)
    """
    value = _check_threshold(threshold)
    max_den = max(1, 128 * words)
    # Reals that round to >= value are those above the midpoint between value and the next double
    # down (that midpoint has a denominator of 2**54 or more, so no candidate fraction equals it).
    below = math.nextafter(value, 0.0)
    midpoint = (Fraction(below) + Fraction(value)) / 2
    upper = _smallest_fraction_above(midpoint, max_den=max_den)
    return upper.numerator, upper.denominator


def _smallest_fraction_above(x: Fraction, *, max_den: int) -> Fraction:
    """Smallest fraction with denominator <= ``max_den`` that is >= ``x`` (0 < x <= 1).

    Walks the continued fraction of ``x`` as :meth:`fractions.Fraction.limit_denominator` does; the
    last two convergents then give the two Farey neighbours of order ``max_den`` around ``x``.
    """
    p0, q0, p1, q1 = 0, 1, 1, 0
    n, d = x.numerator, x.denominator
    while True:
        a = n // d
        q2 = q0 + a * q1
        if q2 > max_den:
            break
        p0, q0, p1, q1 = p1, q1, p0 + a * p1, q2
        n, d = d, n - a * d
        if d == 0:
            return x
    k = (max_den - q0) // q1
    neighbours = (Fraction(p0 + k * p1, q0 + k * q1), Fraction(p1, q1))
    return min(f for f in neighbours if f >= x)


def dice_candidates(a: np.ndarray, b: np.ndarray, *, threshold: float) -> Candidates:
    """All pairs ``(i, j)`` whose Dice coefficient of ``a[i]`` and ``b[j]`` is ``>= threshold``.

    Parameters
    ----------
    a, b : numpy.ndarray
        Bit-packed CLKs, ``uint64`` of shape ``(n, words)``, C-contiguous, same ``words``.
    threshold : float
        In ``(0, 1]``. Compared against the ``float64`` score, exactly (see
        :func:`threshold_ratio`). Two all-zero CLKs have Dice 0 and are never candidates.

    Returns
    -------
    Candidates
        Sorted by score descending, then left, then right.

    Raises
    ------
    MatchingInputError
        On a wrong dtype, dimension, word count, layout or threshold. Arrays are never copied.

    Examples
    --------
    >>> a = np.array([[0b1111, 0]], dtype=np.uint64)
    >>> b = np.array([[0b0111, 0], [0b1111, 0]], dtype=np.uint64)
    >>> found = dice_candidates(a, b, threshold=0.8)
    >>> found.right.tolist(), found.score.tolist()
    ([1, 0], [1.0, 0.8571428571428571])
    """
    check_clks(a, name="a")
    check_clks(b, name="b")
    if a.shape[1] != b.shape[1]:
        raise MatchingInputError(
            f"a and b must have the same CLK length; got {a.shape[1]} and {b.shape[1]} words"
        )
    num, den = threshold_ratio(threshold, words=a.shape[1])
    left, right, score = kernels.candidate_pairs(a, b, num, den)
    # The kernel emits pairs in (left, right) order, so a stable sort on score alone yields the
    # documented order (score desc, left asc, right asc).
    order = np.argsort(-score, kind="stable")
    return Candidates(left=left[order], right=right[order], score=score[order])


def dice_score(a_row: np.ndarray, b_row: np.ndarray) -> float:
    """Dice coefficient of two bit-packed CLKs given as 1-D ``uint64`` arrays of equal length.

    Returns 0.0 when both are all-zero.

    Examples
    --------
    >>> dice_score(np.array([0b1111], dtype=np.uint64), np.array([0b0111], dtype=np.uint64))
    0.8571428571428571
    """
    for name, row in (("a_row", a_row), ("b_row", b_row)):
        if not isinstance(row, np.ndarray) or row.dtype != np.uint64 or row.ndim != 1:
            raise MatchingInputError(f"{name}: expected a 1-D uint64 array (one bit-packed CLK)")
        if not row.flags.c_contiguous:
            raise MatchingInputError(f"{name}: expected a contiguous array")
    if a_row.shape != b_row.shape:
        raise MatchingInputError(
            f"a_row and b_row must have the same CLK length; got {a_row.shape[0]} and "
            f"{b_row.shape[0]} words"
        )
    return float(kernels.dice_pair(a_row, b_row))
