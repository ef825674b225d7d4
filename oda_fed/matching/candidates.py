"""Dice candidate pairs between two sets of CLKs: input checks, threshold, kernel calls, sort.

The threshold semantics are exact and match what a user sees: a pair is a candidate when its
reported ``score`` (the Dice coefficient rounded to ``float64``) is ``>= threshold``. The kernel
tests this with integers only, using the rational :func:`threshold_ratio` returns.

The kernels write each passing pair once, as an ``int64`` key that encodes its exact score rank
and its (left, right) index (:func:`key_layout`); one ``numpy`` sort of the keys gives the
documented order, and :func:`oda_fed.matching.kernels.decode_keys` turns them into columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numba
import numpy as np

from oda_fed.errors import InputDataError
from oda_fed.matching import kernels

# Keys per task per round (1 MiB): room for many block-tile units (at most 8192 keys each), so
# that most calls finish in one round, yet small beside the output at low thresholds.
_SLAB_KEYS = 1 << 17
#: Candidate pairs one call may return. Linking holds about 100 bytes per candidate at its peak
#: (keys, columns, the global sort in resolution), so this keeps a pair of sources under ~5 GB;
#: sensible thresholds give about one candidate per record (700,000 at 1M x 1M), far below it.
MAX_CANDIDATES = 50_000_000


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


def _check_top_k(top_k: int | None) -> int | None:
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer):
        raise MatchingInputError(
            f"top_k must be a whole number or None, got {type(top_k).__name__}"
        )
    if top_k < 1:
        raise MatchingInputError(f"top_k must be at least 1 (or None for no limit), got {top_k}")
    return int(top_k)


@dataclass(frozen=True)
class KeyLayout:
    """How :func:`candidate_keys` packs a pair into an ``int64`` key.

    The key is ``rank << pair_bits | left << right_bits | right``.

    Attributes
    ----------
    score_bits : int
        ``K`` of :func:`oda_fed.matching.kernels.score_rank`; 0 leaves the rank out.
    right_bits : int
        Bits for any right row index.
    pair_bits : int
        Bits for ``left << right_bits | right``.
    """

    score_bits: int
    right_bits: int
    pair_bits: int


def key_layout(*, n_a: int, n_b: int, words: int, num: int, den: int) -> KeyLayout:
    """Pick the bits of the candidate sort key for these input sizes and this threshold.

    ``score_bits`` is the smallest ``K`` with ``2**K >= smax**2`` (``smax = 128 * words``, the
    largest ``pa + pb``), which makes the rank exact. When the rank of the lowest passing score
    and the pair do not fit together in 63 bits (for 1024-bit CLKs at threshold 0.5, beyond
    about 2**41 pairs), or the CLKs are longer than 65,536 bits, ``score_bits`` is 0: the key is
    the pair alone and :func:`find_candidates` sorts by score afterwards, more slowly.

    Examples
    --------
    >>> key_layout(n_a=10_000, n_b=10_000, words=16, num=1, den=2)
    KeyLayout(score_bits=22, right_bits=14, pair_bits=28)
    """
    right_bits = max(n_b - 1, 0).bit_length()
    pair_bits = max(n_a - 1, 0).bit_length() + right_bits
    if pair_bits > 63:
        raise MatchingInputError(
            f"{n_a:,} x {n_b:,} CLKs are too many to pair in one call; split or block the inputs"
        )
    smax = 128 * words
    score_bits = (smax * smax - 1).bit_length()
    worst_rank = (1 << score_bits) - (num << score_bits) // den
    # score_rank's float quotient is exact only while smax <= 2**17 (see its docstring).
    if smax > 1 << 17 or worst_rank.bit_length() + pair_bits > 63:
        score_bits = 0
    return KeyLayout(score_bits=score_bits, right_bits=right_bits, pair_bits=pair_bits)


def check_candidate_count(count: int, *, num: int, den: int) -> None:
    """Stop, before memory runs out, when a threshold lets through too many pairs."""
    if count > MAX_CANDIDATES:
        raise MatchingInputError(
            f"more than {MAX_CANDIDATES:,} candidate pairs pass the threshold {num / den:.3f}: "
            "too many to resolve in memory (a threshold this low links mostly unrelated "
            'records). Raise the threshold, or use "auto"'
        )


def _scan_inputs(a: np.ndarray, b: np.ndarray, *, num: int, den: int) -> tuple:
    """Both sides sorted by popcount, the right one transposed, and each popcount's window.

    ``(sa, bt, pop_sa, pop_sb, order_a, order_b, win_start, win_stop)``, as the scan kernels
    take them.
    """
    max_pop = 64 * a.shape[1]
    pop_a, pop_b = kernels.popcounts(a), kernels.popcounts(b)
    order_a = np.argsort(pop_a, kind="stable")
    order_b = np.argsort(pop_b, kind="stable")
    pop_sa, pop_sb = pop_a[order_a], pop_b[order_b]
    # starts[p]: the first sorted right position with popcount >= p.
    starts = np.searchsorted(pop_sb, np.arange(max_pop + 2), side="left")
    lo, hi = kernels.popcount_windows(max_pop, num, den)
    win_start = starts[np.minimum(lo, max_pop + 1)]
    win_stop = np.where(hi >= lo, starts[np.minimum(hi, max_pop) + 1], win_start)
    return (
        a[order_a], np.ascontiguousarray(b[order_b].T), pop_sa, pop_sb, order_a, order_b,
        win_start, win_stop,
    )  # fmt: skip


def best_two_scores(
    a: np.ndarray, b: np.ndarray, *, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``a``'s best and second-best Dice score against ``b``, at or above ``threshold``.

    The same exact threshold test as :func:`dice_candidates`, without writing any pair: NaN
    where a row has fewer than one (best) or two (second) such scores. Equal to taking each
    row's two highest :func:`dice_candidates` scores, at the kernel's full speed even when most
    pairs pass.

    Examples
    --------
    >>> a = np.array([[0b1111, 0]], dtype=np.uint64)
    >>> b = np.array([[0b0111, 0], [0b1111, 0]], dtype=np.uint64)
    >>> best, second = best_two_scores(a, b, threshold=0.8)
    >>> best.tolist(), second.tolist()
    ([1.0], [0.8571428571428571])
    """
    check_clks(a, name="a")
    check_clks(b, name="b")
    if a.shape[1] != b.shape[1]:
        raise MatchingInputError(
            f"a and b must have the same CLK length; got {a.shape[1]} and {b.shape[1]} words"
        )
    num, den = threshold_ratio(threshold, words=a.shape[1])
    best = np.full(a.shape[0], np.nan)
    second = np.full(a.shape[0], np.nan)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return best, second
    sa, bt, pop_sa, pop_sb, order_a, _, win_start, win_stop = _scan_inputs(a, b, num=num, den=den)
    top, runner = kernels.best_two(sa, bt, pop_sa, pop_sb, win_start, win_stop, num, den)
    best[order_a] = np.where(top >= 0, top, np.nan)
    second[order_a] = np.where(runner >= 0, runner, np.nan)
    return best, second


def candidate_keys(
    a: np.ndarray, b: np.ndarray, *, num: int, den: int, layout: KeyLayout, tasks: int
) -> np.ndarray:
    """Sort keys of all pairs with Dice >= ``num / den``, in no particular order.

    Sorts both sides by popcount, transposes the right side, finds each popcount's window of
    sorted right rows, then runs :func:`oda_fed.matching.kernels.scan_round` until every task
    is done, keeping each round's slabs. ``tasks`` is the number of parallel work lists.
    Sorting the keys orders pairs by score descending, then left, then right (with
    ``layout.score_bits == 0``: by left, then right).

    Examples
    --------
    >>> a = np.array([[0b1111], [0b0001]], dtype=np.uint64)
    >>> layout = KeyLayout(score_bits=0, right_bits=1, pair_bits=2)
    >>> sorted(candidate_keys(a, a, num=4, den=5, layout=layout, tasks=2).tolist())
    [0, 3]
    """
    bits = (layout.score_bits, layout.right_bits, layout.pair_bits)
    scan = (*_scan_inputs(a, b, num=num, den=den), num, den, *bits)
    next_block = np.arange(tasks, dtype=np.int64)
    next_col = np.full(tasks, -1, dtype=np.int64)
    fill = np.zeros(tasks, dtype=np.int64)
    parts = []
    done = False
    while not done:
        # A fresh slab each round: the previous rounds' slabs are kept as they are, not copied.
        slab = np.empty((tasks, _SLAB_KEYS), dtype=np.int64)
        done = kernels.scan_round(*scan, next_block, next_col, slab, fill)
        parts.extend(slab[t, : fill[t]] for t in range(tasks) if fill[t])
        check_candidate_count(sum(len(p) for p in parts), num=num, den=den)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def find_candidates(
    a: np.ndarray,
    b: np.ndarray,
    *,
    num: int,
    den: int,
    top_k: int | None,
    layout: KeyLayout,
) -> Candidates:
    """Run the kernels on checked inputs; :func:`dice_candidates` is the public entry point.

    ``layout`` comes from :func:`key_layout`; tests also pass ``score_bits=0`` to check the
    slower path that huge inputs take.

    Examples
    --------
    >>> a = np.array([[0b1111]], dtype=np.uint64)
    >>> layout = key_layout(n_a=1, n_b=1, words=1, num=1, den=1)
    >>> find_candidates(a, a, num=1, den=1, top_k=None, layout=layout).score.tolist()
    [1.0]
    """
    if a.shape[0] == 0 or b.shape[0] == 0:
        empty = np.empty(0, dtype=np.int64)
        return Candidates(left=empty, right=empty.copy(), score=np.empty(0, dtype=np.float64))
    # Several tasks per thread: blocks are dealt round-robin, so each thread gets a fair mix.
    tasks = 4 * numba.get_num_threads()
    keys = candidate_keys(a, b, num=num, den=den, layout=layout, tasks=tasks)
    # numpy's sort uses an AVX-512 sorting network where the CPU has one; keys are unique.
    keys.sort()
    bits = (layout.score_bits, layout.right_bits, layout.pair_bits)
    left, right, score = kernels.decode_keys(a, b, keys, *bits)
    if layout.score_bits == 0:
        # The keys held (left, right) only: a stable sort on score gives the documented order.
        order = np.argsort(-score, kind="stable")
        left, right, score = left[order], right[order], score[order]
    if top_k is not None and top_k < b.shape[0]:
        keep = kernels.top_k_positions(left, a.shape[0], top_k)
        left, right, score = left[keep], right[keep], score[keep]
    return Candidates(left=left, right=right, score=score)


def dice_candidates(
    a: np.ndarray, b: np.ndarray, *, threshold: float, top_k: int | None = None
) -> Candidates:
    """All pairs ``(i, j)`` whose Dice coefficient of ``a[i]`` and ``b[j]`` is ``>= threshold``.

    Scored by the Numba kernels in :mod:`oda_fed.matching.kernels` on every core: only right
    rows whose popcount lets a pair reach the threshold are compared, in cache-sized tiles,
    with hardware popcounts and an integer threshold test.

    Parameters
    ----------
    a, b : numpy.ndarray
        Bit-packed CLKs, ``uint64`` of shape ``(n, words)``, C-contiguous, same ``words``.
    threshold : float
        In ``(0, 1]``. Compared against the ``float64`` score, exactly (see
        :func:`threshold_ratio`). Two all-zero CLKs have Dice 0 and are never candidates.
    top_k : int or None
        Keep at most this many pairs per left row: its best right rows by score, ties going to
        the lower right index (so the kept pairs are the first ``top_k`` of that left row in the
        order below). ``None`` (the default) keeps every pair above the threshold.

    Returns
    -------
    Candidates
        Sorted by score descending, then left, then right.

    Raises
    ------
    MatchingInputError
        On a wrong dtype, dimension, word count, layout, threshold or ``top_k``. Arrays are
        never copied.

    Examples
    --------
    >>> a = np.array([[0b1111, 0]], dtype=np.uint64)
    >>> b = np.array([[0b0111, 0], [0b1111, 0]], dtype=np.uint64)
    >>> found = dice_candidates(a, b, threshold=0.8)
    >>> found.right.tolist(), found.score.tolist()
    ([1, 0], [1.0, 0.8571428571428571])
    >>> dice_candidates(a, b, threshold=0.8, top_k=1).right.tolist()
    [1]
    """
    check_clks(a, name="a")
    check_clks(b, name="b")
    if a.shape[1] != b.shape[1]:
        raise MatchingInputError(
            f"a and b must have the same CLK length; got {a.shape[1]} and {b.shape[1]} words"
        )
    k = _check_top_k(top_k)
    num, den = threshold_ratio(threshold, words=a.shape[1])
    layout = key_layout(n_a=a.shape[0], n_b=b.shape[0], words=a.shape[1], num=num, den=den)
    return find_candidates(a, b, num=num, den=den, top_k=k, layout=layout)


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
