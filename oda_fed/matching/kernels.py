"""Numba kernels over bit-packed CLKs: popcounts, popcount windows and Dice candidate pairs.

Only ``@njit`` functions over arrays live here (plus the popcount intrinsic they share and a few
constant tile sizes), so that Numba's on-disk cache, which tracks this file alone, is invalidated
whenever a kernel changes. Every public kernel has a plain-Python twin of the same name in
:mod:`oda_fed.matching.reference`.

CLKs are ``uint64[:, ::1]`` arrays: row ``r`` is one CLK, bit ``b`` lives in word ``b // 64`` at
position ``b % 64``. Counts are ``int64`` throughout: Numba promotes mixed ``uint64``/``int64``
arithmetic to ``float64``, which would make the threshold test inexact.

The threshold is a rational ``num / den`` and a pair ``(i, j)`` passes when
``2 * inter * den >= num * (pa + pb)``: integers only, no division per pair. Pairs whose two CLKs
are both all-zero have Dice 0 by definition and never pass (every threshold is positive).

How the candidate scan works (:func:`scan_round`, driven by
:func:`oda_fed.matching.candidates.candidate_keys`; measured in ``benchmarks/kernel.py``):

* Both sides are sorted by popcount. Each left row then meets only the contiguous run of right
  rows inside its exact popcount window (:func:`popcount_window`).
* The sorted right side is stored transposed (``bt[w, j]`` is word ``w`` of right row ``j``), so
  the inner loop runs over right rows with the left row's words held in registers: LLVM turns
  it into vector loads, ANDs and vector popcounts (``vpopcntq`` on AVX-512), with no horizontal
  sums.
* Cache tiling: a block of ``_BLOCK_ROWS`` left rows (neighbours in popcount, so with nearly the
  same window) walks the union of their windows in tiles of ``_TILE`` right rows; a tile
  (``_TILE * 128`` bytes for 1024-bit CLKs) stays in L1 while the block streams over it.
* One pass: a passing pair is written once, as one ``int64`` sort key, into its task's slab, and
  never recomputed. Blocks are dealt round-robin to a few tasks per thread under ``prange``, so
  every core gets both cheap (extreme popcount) and costly (central) blocks. A task that might
  overflow its slab stops; the round's slabs are kept and the next round resumes. Scratch
  memory is a slab per task whatever the match rate; only the output grows with it.
* The key is ``rank << pair_bits | left << right_bits | right``, with ``rank`` an exact integer
  that falls as Dice rises (:func:`score_rank`), so one ``numpy.sort`` of the keys yields the
  documented order: score descending, left ascending, right ascending.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

# Right rows per tile: 256 rows of 1024-bit CLKs are 32 KiB, under a 48 KiB L1 data cache.
_TILE = 256
# Left rows per block: enough to reuse each tile many times, few enough to keep blocks balanced.
_BLOCK_ROWS = 32


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
def popcount_window(pa: int, num: int, den: int) -> tuple[int, int]:
    """Popcounts ``pb`` for which a pair ``(pa, pb)`` can reach Dice ``>= num / den``: ``[lo, hi]``.

    Proof that the window is exact. ``inter <= min(pa, pb)``, so
    ``dice <= 2 min(pa, pb) / (pa + pb)``, with equality when one CLK's bits contain the other's.
    A pair can therefore pass iff ``2 min(pa, pb) den >= num (pa + pb)`` (and ``pa + pb > 0``).
    With ``0 < num <= den``, ``2 den - num >= den > 0``, and:

    * ``pb <= pa``: ``2 pb den >= num pa + num pb``  iff  ``pb (2 den - num) >= num pa``
      iff  ``pb >= ceil(num pa / (2 den - num))`` = ``lo``;
    * ``pb >= pa``: ``2 pa den >= num pa + num pb``  iff  ``num pb <= pa (2 den - num)``
      iff  ``pb <= floor(pa (2 den - num) / num)`` = ``hi``.

    Both bounds are integer divisions, so no rounding can drop a pair, and ``lo <= pa <= hi``, so
    the two cases join into one interval. ``pa == 0`` gives an empty window (returned as
    ``(1, 0)``): such a CLK has Dice 0 with anything. For ``pa > 0``, ``lo >= 1``, so all-zero
    right CLKs fall outside. The real-number form is ``pa t / (2 - t) <= pb <= pa (2 - t) / t``.

    Examples
    --------
    >>> popcount_window(400, 4, 5)  # t = 0.8: 400 * 0.8 / 1.2 = 266.7, 400 * 1.2 / 0.8 = 600
    (267, 600)
    """
    if pa <= 0:
        return 1, 0
    slack = 2 * den - num
    lo = (num * pa + slack - 1) // slack
    hi = (pa * slack) // num
    return lo, hi


@njit(cache=True)
def popcount_windows(max_pop: int, num: int, den: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`popcount_window` of every popcount ``0 .. max_pop``, as two ``int64`` arrays.

    Examples
    --------
    >>> lo, hi = popcount_windows(4, 4, 5)
    >>> lo.tolist(), hi.tolist()
    ([1, 1, 2, 2, 3], [0, 1, 3, 4, 6])
    """
    lo = np.empty(max_pop + 1, dtype=np.int64)
    hi = np.empty(max_pop + 1, dtype=np.int64)
    for p in range(max_pop + 1):
        lo[p], hi[p] = popcount_window(p, num, den)
    return lo, hi


@njit(cache=True, inline="always")
def _words_16(a_row, w):
    """Words ``w .. w + 15`` of a left row, as a tuple, so that they live in registers."""
    return (
        a_row[w], a_row[w + 1], a_row[w + 2], a_row[w + 3],
        a_row[w + 4], a_row[w + 5], a_row[w + 6], a_row[w + 7],
        a_row[w + 8], a_row[w + 9], a_row[w + 10], a_row[w + 11],
        a_row[w + 12], a_row[w + 13], a_row[w + 14], a_row[w + 15],
    )  # fmt: skip


@njit(cache=True, inline="always")
def _columns_16(bt, w, start, stop):
    """Words ``w .. w + 15`` of sorted right rows ``start .. stop - 1``: 16 contiguous runs."""
    return (
        bt[w, start:stop], bt[w + 1, start:stop], bt[w + 2, start:stop], bt[w + 3, start:stop],
        bt[w + 4, start:stop], bt[w + 5, start:stop], bt[w + 6, start:stop],
        bt[w + 7, start:stop], bt[w + 8, start:stop], bt[w + 9, start:stop],
        bt[w + 10, start:stop], bt[w + 11, start:stop], bt[w + 12, start:stop],
        bt[w + 13, start:stop], bt[w + 14, start:stop], bt[w + 15, start:stop],
    )  # fmt: skip


@njit(cache=True, inline="always")
def _and_popcount_16(aw, bw, r):
    """``popcount`` of 16 left words ANDed with right row ``r``'s 16 words, summed.

    Written out (not a loop over words) so that LLVM vectorises the caller's loop over ``r``:
    vector loads from each of the 16 runs, ANDs with the broadcast left words, and vector
    popcounts (``vpopcntq`` on AVX-512), with no horizontal sums. A loop over words instead
    makes LLVM gather.
    """
    return (
        _popcount64(aw[0] & bw[0][r]) + _popcount64(aw[1] & bw[1][r])
        + _popcount64(aw[2] & bw[2][r]) + _popcount64(aw[3] & bw[3][r])
        + _popcount64(aw[4] & bw[4][r]) + _popcount64(aw[5] & bw[5][r])
        + _popcount64(aw[6] & bw[6][r]) + _popcount64(aw[7] & bw[7][r])
        + _popcount64(aw[8] & bw[8][r]) + _popcount64(aw[9] & bw[9][r])
        + _popcount64(aw[10] & bw[10][r]) + _popcount64(aw[11] & bw[11][r])
        + _popcount64(aw[12] & bw[12][r]) + _popcount64(aw[13] & bw[13][r])
        + _popcount64(aw[14] & bw[14][r]) + _popcount64(aw[15] & bw[15][r])
    )  # fmt: skip


@njit(cache=True)
def _tile_1024(a_row, bt, start, m, cnt, pop_sb, need, num, twice_den):
    """For 1024-bit CLKs: ``cnt[r] = popcount(a_row & sorted right row start + r)`` for
    ``r < m``; returns how many pass, ``twice_den * cnt[r] >= need + num * pop_sb[start + r]``.

    One loop does both (counting in a second pass over ``cnt`` cost a quarter more time).
    """
    stop = start + m
    aw = _words_16(a_row, 0)
    bw = _columns_16(bt, 0, start, stop)
    pb = pop_sb[start:stop]
    hits = 0
    for r in range(m):
        c = _and_popcount_16(aw, bw, r)
        cnt[r] = c
        hits += twice_den * c >= need + num * pb[r]
    return hits


@njit(cache=True)
def _add_16_words(a_row, w, bt, start, m, cnt):
    """``cnt[r] += popcount`` of words ``w .. w + 15`` of ``a_row`` and of sorted right row
    ``start + r``, for ``r < m``: CLKs longer than 1024 bits."""
    aw = _words_16(a_row, w)
    bw = _columns_16(bt, w, start, start + m)
    for r in range(m):
        cnt[r] += _and_popcount_16(aw, bw, r)


@njit(cache=True)
def _add_4_words(a_row, w, bt, start, m, cnt):
    """As :func:`_add_16_words` for 4 words, for CLK lengths that are not a multiple of 1024."""
    a0, a1, a2, a3 = a_row[w], a_row[w + 1], a_row[w + 2], a_row[w + 3]
    stop = start + m
    b0 = bt[w, start:stop]
    b1 = bt[w + 1, start:stop]
    b2 = bt[w + 2, start:stop]
    b3 = bt[w + 3, start:stop]
    for r in range(m):
        cnt[r] += (
            _popcount64(a0 & b0[r]) + _popcount64(a1 & b1[r])
            + _popcount64(a2 & b2[r]) + _popcount64(a3 & b3[r])
        )  # fmt: skip


@njit(cache=True)
def _intersections(a_row, bt, start, m, cnt):
    """``cnt[r] = popcount(a_row & sorted right row start + r)`` for ``r < m``."""
    words = a_row.shape[0]
    for r in range(m):
        cnt[r] = 0
    w = 0
    while w + 16 <= words:
        _add_16_words(a_row, w, bt, start, m, cnt)
        w += 16
    while w + 4 <= words:
        _add_4_words(a_row, w, bt, start, m, cnt)
        w += 4
    while w < words:
        aw = a_row[w]
        bw = bt[w, start : start + m]
        for r in range(m):
            cnt[r] += _popcount64(aw & bw[r])
        w += 1


@njit(cache=True, inline="always")
def _row_tile(i, col, tile_stop, sa, bt, pop_sa, pop_sb, win_start, win_stop, num, den, cnt):
    """Sorted left row ``i`` against the tile ``[col, tile_stop)``, cut to its popcount window.

    Fills ``cnt[:m]`` with the intersections of right positions ``start .. start + m - 1`` and
    returns ``(start, m, hits)``, ``hits`` being how many pass (all 0 when the window misses the
    tile).
    """
    pa = pop_sa[i]
    start = max(col, win_start[pa])
    stop = min(tile_stop, win_stop[pa])
    if start >= stop:
        return start, 0, 0
    m = stop - start
    need = num * pa
    if sa.shape[1] == 16:
        return start, m, _tile_1024(sa[i], bt, start, m, cnt, pop_sb, need, num, 2 * den)
    _intersections(sa[i], bt, start, m, cnt)
    # A vectorised count first: at high thresholds most tiles have no hit.
    hits = 0
    for r in range(m):
        hits += 2 * den * cnt[r] >= need + num * pop_sb[start + r]
    return start, m, hits


@njit(cache=True)
def score_rank(inter: int, total: int, score_bits: int) -> int:
    """Exact integer rank of the Dice value ``2 inter / total``: lower rank, higher score.

    ``rank = 2**K - floor(2 inter 2**K / total)`` with ``K = score_bits``, where ``2**K`` is at
    least ``smax**2`` (``smax``, the largest possible ``total``, is at most ``2**17``).

    * Order: distinct Dice values ``2i/s`` and ``2i'/s'`` differ by at least ``1 / (s s')
      >= 2**-K``, so their scaled values differ by at least 1 and their floors differ; equal
      values get equal ranks. So ranks order pairs exactly as their scores, reversed.
    * No integer division: ``2 inter 2**K < 2**52`` is exact as a ``float64``, and the quotient
      is correctly rounded with an error under ``2**(K + 1 - 53) < 1 / smax``. A quotient that
      is not an integer lies at least ``1 / total >= 1 / smax`` from the next integer, so
      rounding never carries it across one, and truncation gives the exact floor.
    * Inverse: with ``v = 2**K - rank``, ``v total / 2**K`` lies in ``(2 inter - 1, 2 inter]``
      (because ``total < 2**K``), so ``2 inter = ceil(v total / 2**K)``
      (:func:`decode_keys` uses this).

    Examples
    --------
    >>> score_rank(4, 10, 22), score_rank(8, 20, 22), score_rank(5, 10, 22)  # 0.8, 0.8, 1.0
    (838861, 838861, 0)
    """
    return (1 << score_bits) - int(np.float64((2 * inter) << score_bits) / total)


@njit(cache=True)
def _scan_task(
    t, sa, bt, pop_sa, pop_sb, order_a, order_b, win_start, win_stop,
    num, den, score_bits, right_bits, pair_bits, next_block, next_col, slab, fill,
):  # fmt: skip
    """Task ``t`` of :func:`scan_round`: its blocks, from where it stopped, into ``slab[t]``."""
    tasks, capacity = slab.shape
    n_a = sa.shape[0]
    n_blocks = (n_a + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    cnt = np.empty(_TILE, dtype=np.int64)
    passing = np.empty(_TILE, dtype=np.int64)
    written = 0
    block = next_block[t]
    col = next_col[t]
    while block < n_blocks:
        i0 = block * _BLOCK_ROWS
        i1 = min(i0 + _BLOCK_ROWS, n_a)
        # Windows grow with the popcount and the block is sorted by it, so its first and
        # last rows bound the union of its windows.
        lo = win_start[pop_sa[i0]]
        hi = win_stop[pop_sa[i1 - 1]]
        col = max(col, lo)
        while col < hi and capacity - written >= _BLOCK_ROWS * _TILE:
            tile_stop = min(col + _TILE, hi)
            for i in range(i0, i1):
                start, m, hits = _row_tile(
                    i, col, tile_stop, sa, bt, pop_sa, pop_sb, win_start, win_stop, num, den, cnt
                )
                if hits == 0:
                    continue
                pa = pop_sa[i]
                need = num * pa
                # Branch-free compaction of the passing positions, then their keys: at low
                # thresholds, a branch per pair mispredicts often.
                n = 0
                for r in range(m):
                    passing[n] = r
                    n += 2 * den * cnt[r] >= need + num * pop_sb[start + r]
                left = order_a[i] << right_bits
                for e in range(n):
                    r = passing[e]
                    key = left | order_b[start + r]
                    if score_bits > 0:
                        rank = score_rank(cnt[r], pa + pop_sb[start + r], score_bits)
                        key |= rank << pair_bits
                    slab[t, written + e] = key
                written += n
            col = tile_stop
        if col < hi:
            break  # slab nearly full: resume this block at `col` next round
        block += tasks
        col = -1
    next_block[t] = block
    next_col[t] = col
    fill[t] = written


@njit(cache=True, parallel=True)
def scan_round(
    sa: np.ndarray,
    bt: np.ndarray,
    pop_sa: np.ndarray,
    pop_sb: np.ndarray,
    order_a: np.ndarray,
    order_b: np.ndarray,
    win_start: np.ndarray,
    win_stop: np.ndarray,
    num: int,
    den: int,
    score_bits: int,
    right_bits: int,
    pair_bits: int,
    next_block: np.ndarray,
    next_col: np.ndarray,
    slab: np.ndarray,
    fill: np.ndarray,
) -> bool:
    """One round of the candidate scan; returns whether every task has finished.

    Inputs, as :func:`oda_fed.matching.candidates.candidate_keys` prepares them: ``sa``, the
    left CLKs sorted by popcount (``pop_sa``; ``order_a[i]`` is the original row of sorted
    row ``i``); ``bt``, the right CLKs sorted likewise and transposed (``bt[w, j]``;
    ``pop_sb``, ``order_b``); ``[win_start[p], win_stop[p])``, the sorted right positions in the
    popcount window of ``p``. Keys are ``rank << pair_bits | left << right_bits | right`` (no
    rank when ``score_bits == 0``).

    Task ``t`` (one per row of ``slab``) owns blocks ``t, t + tasks, t + 2 tasks, ...`` of
    sorted left rows. It resumes at block ``next_block[t]``, sorted right position
    ``next_col[t]`` (-1 at a block's start), runs until it is done or its slab might overflow,
    records where it stopped, and sets ``fill[t]`` to the number of keys it wrote into
    ``slab[t]``. Each task writes only its own slab row and state: no locks.
    """
    if slab.shape[1] < _BLOCK_ROWS * _TILE:
        # A task could never make progress.
        raise ValueError("scan_round: each slab row must hold at least 8192 keys")
    # The loop body is one call: Numba's parallel passes are slow on large loop bodies.
    for t in prange(slab.shape[0]):
        _scan_task(
            t, sa, bt, pop_sa, pop_sb, order_a, order_b, win_start, win_stop,
            num, den, score_bits, right_bits, pair_bits, next_block, next_col, slab, fill,
        )  # fmt: skip
    return next_block.min() >= (sa.shape[0] + _BLOCK_ROWS - 1) // _BLOCK_ROWS


@njit(cache=True)
def _best_two_block(i0, i1, sa, bt, pop_sa, pop_sb, win_start, win_stop, num, den, best, second):
    """Rows ``i0 .. i1 - 1`` of :func:`best_two`: the tiles of their windows, best two kept."""
    cnt = np.empty(_TILE, dtype=np.int64)
    lo = win_start[pop_sa[i0]]
    hi = win_stop[pop_sa[i1 - 1]]
    col = lo
    while col < hi:
        tile_stop = min(col + _TILE, hi)
        for i in range(i0, i1):
            start, m, hits = _row_tile(
                i, col, tile_stop, sa, bt, pop_sa, pop_sb, win_start, win_stop, num, den, cnt
            )
            if hits == 0:
                continue
            pa = pop_sa[i]
            need = num * pa
            for r in range(m):
                total = pa + pop_sb[start + r]
                if 2 * den * cnt[r] < need + num * pop_sb[start + r] or total == 0:
                    continue
                score = 2.0 * cnt[r] / total
                if score > best[i]:
                    second[i] = best[i]
                    best[i] = score
                elif score > second[i]:
                    second[i] = score
        col = tile_stop


@njit(cache=True, parallel=True)
def best_two(
    sa: np.ndarray,
    bt: np.ndarray,
    pop_sa: np.ndarray,
    pop_sb: np.ndarray,
    win_start: np.ndarray,
    win_stop: np.ndarray,
    num: int,
    den: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Best and second-best Dice score of each sorted left row over all right rows.

    Inputs as for :func:`scan_round`. Only pairs passing ``num / den`` count; a row with fewer
    than two gets ``-1.0`` in the missing places. Scores are kept per row, never written as
    pairs, so this runs at the scan's full speed however many pairs pass: the quality
    estimate's pass over a sample at a low floor.
    """
    n_a = sa.shape[0]
    best = np.full(n_a, -1.0)
    second = np.full(n_a, -1.0)
    n_blocks = (n_a + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    for block in prange(n_blocks):
        i0 = block * _BLOCK_ROWS
        i1 = min(i0 + _BLOCK_ROWS, n_a)
        _best_two_block(i0, i1, sa, bt, pop_sa, pop_sb, win_start, win_stop, num, den, best, second)
    return best, second


@njit(cache=True, parallel=True)
def decode_keys(
    a: np.ndarray,
    b: np.ndarray,
    keys: np.ndarray,
    score_bits: int,
    right_bits: int,
    pair_bits: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left row, right row and ``float64`` Dice score of each key :func:`scan_round` wrote.

    Returned in key order. With a rank in the key the score comes from the rank and the two
    popcounts (see :func:`score_rank`); without one it is recomputed from the CLKs.

    Examples
    --------
    >>> a = np.array([[0b1111], [0b0111]], dtype=np.uint64)
    >>> left, right, score = decode_keys(a, a, np.array([1, 2]), 0, 1, 2)
    >>> left.tolist(), right.tolist(), score.tolist()
    ([0, 1], [1, 0], [0.8571428571428571, 0.8571428571428571])
    """
    n = keys.shape[0]
    pop_a = popcounts(a)
    pop_b = popcounts(b)
    right_mask = (1 << right_bits) - 1
    pair_mask = (1 << pair_bits) - 1
    scale = 1 << score_bits
    left = np.empty(n, dtype=np.int64)
    right = np.empty(n, dtype=np.int64)
    score = np.empty(n, dtype=np.float64)
    for k in prange(n):
        key = keys[k]
        i = (key & pair_mask) >> right_bits
        j = key & right_mask
        total = pop_a[i] + pop_b[j]
        if score_bits > 0:
            twice_inter = ((scale - (key >> pair_bits)) * total + scale - 1) >> score_bits
        else:
            twice_inter = 2 * intersection_count(a, i, b, j)
        left[k] = i
        right[k] = j
        score[k] = twice_inter / total
    return left, right, score


@njit(cache=True)
def top_k_positions(left: np.ndarray, n_left: int, k: int) -> np.ndarray:
    """Positions of the first ``k`` entries of each left row, in order.

    Applied to candidates in the documented order, this keeps each left row's ``k`` best right
    rows, ties going to the lower right index.

    Examples
    --------
    >>> top_k_positions(np.array([0, 1, 0, 0, 1]), 2, 2).tolist()
    [0, 1, 2, 4]
    """
    seen = np.zeros(n_left, dtype=np.int64)
    keep = np.empty(left.shape[0], dtype=np.int64)
    size = 0
    for p in range(left.shape[0]):
        if seen[left[p]] < k:
            seen[left[p]] += 1
            keep[size] = p
            size += 1
    return keep[:size]


# --- LSH blocking (used by matching/blocking.py) ---------------------------------------------


@njit(cache=True, parallel=True)
def band_keys(clks: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Keys of several bands: ``out[band, i]`` packs row ``i``'s bits at ``positions[band]``.

    Bit ``j`` of a key is the bit at ``positions[band, j]``. All bands are read from a row at
    once, while its cache lines are loaded: one band at a time re-reads every row per band.

    Examples
    --------
    >>> band_keys(np.array([[0b1010]], dtype=np.uint64), np.array([[1, 2, 3]])).tolist()
    [[5]]
    """
    n = clks.shape[0]
    bands, k = positions.shape
    words = positions // 64
    # uint64 shifts: mixing uint64 and int64 would make Numba compute in float64.
    shifts = (positions % 64).astype(np.uint64)
    one = np.uint64(1)
    out = np.empty((bands, n), dtype=np.uint64)
    for i in prange(n):
        for band in range(bands):
            key = np.uint64(0)
            for j in range(k):
                bit = (clks[i, words[band, j]] >> shifts[band, j]) & one
                key |= bit << np.uint64(j)
            out[band, i] = key
    return out


@njit(cache=True)
def band_blocks(
    keys_a: np.ndarray, keys_b: np.ndarray, max_block: int
) -> tuple[np.ndarray, int, int, int]:
    """Merge-join two sorted ``uint64`` key arrays into blocks: runs of one shared key.

    Returns ``(blocks, largest, blocks skipped, pairs skipped)``; ``blocks`` is ``int64`` of
    shape ``(n, 4)``, each row ``(a_start, a_stop, b_start, b_stop)`` into the sorted arrays. A
    block of ``(a_stop - a_start) * (b_stop - b_start)`` pairs over ``max_block`` (when
    ``max_block >= 0``) is counted as skipped and left out.

    Examples
    --------
    >>> ka = np.array([1, 1, 5], dtype=np.uint64)
    >>> kb = np.array([1, 5, 5, 7], dtype=np.uint64)
    >>> blocks, largest, skipped, skipped_pairs = band_blocks(ka, kb, -1)
    >>> blocks.tolist(), largest
    ([[0, 2, 0, 1], [2, 3, 1, 3]], 2)
    """
    na = keys_a.shape[0]
    nb = keys_b.shape[0]
    blocks = np.empty((min(na, nb), 4), dtype=np.int64)
    n = 0
    i = 0
    j = 0
    largest = 0
    blocks_skipped = 0
    pairs_skipped = 0
    while i < na and j < nb:
        if keys_a[i] < keys_b[j]:
            i += 1
        elif keys_a[i] > keys_b[j]:
            j += 1
        else:
            key = keys_a[i]
            i1 = i
            while i1 < na and keys_a[i1] == key:
                i1 += 1
            j1 = j
            while j1 < nb and keys_b[j1] == key:
                j1 += 1
            size = (i1 - i) * (j1 - j)
            largest = max(largest, size)
            if max_block >= 0 and size > max_block:
                blocks_skipped += 1
                pairs_skipped += size
            else:
                blocks[n, 0] = i
                blocks[n, 1] = i1
                blocks[n, 2] = j
                blocks[n, 3] = j1
                n += 1
            i = i1
            j = j1
    return blocks[:n], largest, blocks_skipped, pairs_skipped


@njit(cache=True, parallel=True)
def score_blocks(
    blocks: np.ndarray,
    rows_a: np.ndarray,
    rows_b: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    pop_a: np.ndarray,
    pop_b: np.ndarray,
    num: int,
    den: int,
    right_bits: int,
    task_stop: np.ndarray,
    resume_block: np.ndarray,
    resume_row: np.ndarray,
    out: np.ndarray,
    written: np.ndarray,
    compared: np.ndarray,
) -> None:
    """Score every pair of each block; write the passing ones as ``left << right_bits | right``.

    Task ``t`` works through blocks ``resume_block[t] .. task_stop[t] - 1`` (its first block
    from sorted left row ``resume_row[t]``), writing into ``out[t]``, and stops early, at a
    left row, when the next row's pairs might not fit; ``resume_block``/``resume_row`` then say
    where to go on, and ``written[t]`` how many keys it wrote. ``compared[t]`` adds the pairs it
    scored. ``rows_a[x]`` is the original row of sorted position ``x``. ``num < 0`` keeps every
    pair (blocking alone); otherwise the integer Dice test of the all-pairs kernels applies,
    with a popcount bound first so most pairs are rejected without reading their CLKs.
    ``out.shape[1]`` must exceed the largest ``b_stop - b_start``.
    """
    cap = out.shape[1]
    twice_den = 2 * den
    for t in prange(task_stop.shape[0]):
        w = 0
        scored = 0
        blk = resume_block[t]
        x = resume_row[t]
        full = False
        while blk < task_stop[t]:
            a0 = blocks[blk, 0]
            a1 = blocks[blk, 1]
            b0 = blocks[blk, 2]
            b1 = blocks[blk, 3]
            # Rows of earlier blocks lie before a0: a resumed row is within this block.
            if x < a0:
                x = a0
            while x < a1:
                if w + (b1 - b0) > cap:
                    full = True
                    break
                i = rows_a[x]
                pa = pop_a[i]
                left = i << right_bits
                for y in range(b0, b1):
                    j = rows_b[y]
                    if num < 0:
                        out[t, w] = left | j
                        w += 1
                        continue
                    pb = pop_b[j]
                    total = pa + pb
                    # inter <= min(pa, pb): skip pairs that cannot pass without loading rows.
                    if total == 0 or twice_den * min(pa, pb) < num * total:
                        continue
                    if twice_den * intersection_count(a, i, b, j) >= num * total:
                        out[t, w] = left | j
                        w += 1
                scored += b1 - b0
                x += 1
            if full:
                break
            blk += 1
        resume_block[t] = blk
        resume_row[t] = x
        written[t] = w
        compared[t] += scored


@njit(cache=True, parallel=True)
def pair_intersections(
    a: np.ndarray, b: np.ndarray, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """``popcount(a[left[p]] & b[right[p]])`` for each pair ``p``, as ``int64``.

    Examples
    --------
    >>> x = np.array([[0b1111], [0b0110]], dtype=np.uint64)
    >>> pair_intersections(x, x, np.array([0, 0]), np.array([0, 1])).tolist()
    [4, 2]
    """
    n = left.shape[0]
    out = np.empty(n, dtype=np.int64)
    for p in prange(n):
        out[p] = intersection_count(a, left[p], b, right[p])
    return out
