"""The Numba kernels agree exactly with their plain-Python twins, and popcount is a real popcnt."""

from __future__ import annotations

import platform
from fractions import Fraction

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llvmlite import binding as llvm

from oda_fed.matching import kernels, reference, threshold_ratio
from oda_fed.matching.candidates import KeyLayout, candidate_keys, key_layout

pytestmark = pytest.mark.kernel

RATIOS = [(1, 1), (4, 5), (3, 4), (2, 3), (1, 2), (1, 2048), (17, 20), (9, 10)]
ONES = np.iinfo(np.uint64).max


def test_popcounts_match_reference(rng: np.random.Generator) -> None:
    clks = rng.integers(0, 2**64, size=(64, 16), dtype=np.uint64)
    clks[0] = 0
    clks[1] = ONES
    clks[2] = 1 << np.arange(16, dtype=np.uint64)
    got = kernels.popcounts(clks)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, reference.popcounts(clks))
    assert got[0] == 0
    assert got[1] == 1024
    assert got[2] == 16


def test_popcounts_of_no_rows() -> None:
    got = kernels.popcounts(np.zeros((0, 16), dtype=np.uint64))
    assert got.shape == (0,)
    assert got.dtype == np.int64


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_intersection_and_dice_pair_match_reference(clk_pairs, data: st.DataObject) -> None:
    a, b = data.draw(clk_pairs)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            inter = kernels.intersection_count(a, i, b, j)
            assert inter == reference.intersection_count(a, i, b, j)
            assert kernels.dice_pair(a[i], b[j]) == reference.dice_pair(a[i], b[j])


# --- popcount windows -------------------------------------------------------------------------

WINDOW_RATIOS = [
    *RATIOS,
    *(threshold_ratio(t, words=16) for t in (0.5, 0.7, 0.8, 0.9, 0.95, 0.123456, 1e-9)),
]


@pytest.mark.parametrize(("num", "den"), WINDOW_RATIOS)
def test_popcount_window_is_exactly_the_reachable_popcounts(num: int, den: int) -> None:
    # For 1024-bit CLKs, every (pa, pb): the best Dice a pair can have is 2 min(pa, pb) /
    # (pa + pb) (one CLK's bits inside the other's); the window must be exactly where that
    # best reaches num/den, so no pair that could pass is ever skipped and none is scanned idly.
    pop = np.arange(1025, dtype=np.int64)
    pa, pb = pop[:, None], pop[None, :]
    reachable = (2 * np.minimum(pa, pb) * den >= num * (pa + pb)) & (pa + pb > 0)
    for p in range(1025):
        lo, hi = kernels.popcount_window(p, num, den)
        want = np.flatnonzero(reachable[p])
        if want.size == 0:
            assert lo > min(hi, 1024), p
        else:
            assert (lo, min(hi, 1024)) == (want[0], want[-1]), p
        assert (lo, hi) == reference.popcount_window(p, num, den)


def _nested(pop: int, words: int = 16) -> np.ndarray:
    """One CLK whose set bits are the lowest ``pop`` bits: CLKs of this kind nest."""
    bits = np.zeros(64 * words, dtype=np.uint8)
    bits[:pop] = 1
    return np.packbits(bits, bitorder="little").view(np.uint64).reshape(1, words)


@pytest.mark.parametrize(
    ("threshold", "pa"), [(0.8, 400), (0.9, 418), (0.5, 300), (0.7, 1000), (2 / 3, 3)]
)
def test_pairs_at_the_window_edges(threshold: float, pa: int) -> None:
    # Nested CLKs reach the best Dice their popcounts allow: the rows at lo and hi pass (often
    # with Dice exactly the threshold), the rows just outside do not.
    num, den = threshold_ratio(threshold, words=16)
    lo, hi = kernels.popcount_window(pa, num, den)
    edges = [p for p in (lo - 1, lo, hi, hi + 1) if 0 <= p <= 1024]
    a = _nested(pa)
    b = np.concatenate([_nested(p) for p in edges])
    left, right, score = _pairs(a, b, num, den)
    assert sorted(edges[r] for r in right) == [p for p in edges if lo <= p <= hi]
    for p in edges:
        best = Fraction(2 * min(pa, p), pa + p)
        assert (lo <= p <= hi) == (float(best) >= threshold)
    assert (score >= threshold).all()


@pytest.mark.parametrize(("num", "den"), WINDOW_RATIOS)
def test_popcount_windows_match_reference(num: int, den: int) -> None:
    for max_pop in (64, 1024):
        for got, want in zip(
            kernels.popcount_windows(max_pop, num, den),
            reference.popcount_windows(max_pop, num, den),
            strict=True,
        ):
            assert got.dtype == want.dtype == np.int64
            np.testing.assert_array_equal(got, want)


# --- score ranks ------------------------------------------------------------------------------


@numba.njit(cache=False)
def _rank_mismatches(smax: int, score_bits: int, totals: np.ndarray) -> int:
    """Count (inter, total) where the float rank differs from exact integer floor arithmetic,
    or where the rank does not invert back to 2 * inter."""
    bad = 0
    scale = 1 << score_bits
    for total in totals:
        for inter in range(total // 2 + 1):
            rank = kernels.score_rank(inter, total, score_bits)
            if rank != scale - ((2 * inter) << score_bits) // total:
                bad += 1
            if ((scale - rank) * total + scale - 1) >> score_bits != 2 * inter:
                bad += 1
    return bad


@pytest.mark.parametrize("words", [1, 16, 32])
def test_score_rank_is_exact_for_every_dice_value(words: int) -> None:
    layout = key_layout(n_a=2, n_b=2, words=words, num=1, den=2)
    smax = 128 * words
    assert _rank_mismatches(smax, layout.score_bits, np.arange(1, smax + 1)) == 0


def test_score_rank_is_exact_for_the_longest_clks(rng: np.random.Generator) -> None:
    # 65,536-bit CLKs: smax = 2**17, the largest for which the float quotient is exact.
    layout = key_layout(n_a=2, n_b=2, words=1024, num=1, den=2)
    assert layout.score_bits == 34
    totals = np.concatenate([np.arange(1, 64), rng.integers(1, 1 << 17, size=40), [1 << 17]])
    assert _rank_mismatches(1 << 17, 34, totals) == 0


def test_score_rank_orders_like_the_scores() -> None:
    fractions = sorted(
        {(Fraction(2 * i, s), i, s) for s in range(1, 200) for i in range(s // 2 + 1)}
    )
    ranks = [kernels.score_rank(i, s, 16) for _, i, s in fractions]
    for k in range(len(fractions) - 1):
        lower, higher = fractions[k][0], fractions[k + 1][0]
        assert ranks[k] > ranks[k + 1] if lower < higher else ranks[k] == ranks[k + 1]
    for _, i, s in fractions[::97]:
        assert kernels.score_rank(i, s, 16) == reference.score_rank(i, s, 16)


# --- candidate keys ---------------------------------------------------------------------------


def _layout(a: np.ndarray, b: np.ndarray, num: int, den: int, *, with_score: bool) -> KeyLayout:
    layout = key_layout(n_a=a.shape[0], n_b=b.shape[0], words=a.shape[1], num=num, den=den)
    score_bits = layout.score_bits if with_score else 0
    return KeyLayout(score_bits, layout.right_bits, layout.pair_bits)


def _bits(layout: KeyLayout) -> tuple[int, int, int]:
    return layout.score_bits, layout.right_bits, layout.pair_bits


def _keys(a: np.ndarray, b: np.ndarray, num: int, den: int, layout: KeyLayout, **kw) -> tuple:
    got = np.sort(candidate_keys(a, b, num=num, den=den, layout=layout, **kw))
    want = reference.candidate_keys(a, b, num=num, den=den, **vars(layout))
    return got, np.sort(want)


def _pairs(a: np.ndarray, b: np.ndarray, num: int, den: int) -> tuple[np.ndarray, ...]:
    layout = _layout(a, b, num, den, with_score=True)
    keys = np.sort(candidate_keys(a, b, num=num, den=den, layout=layout, tasks=2))
    return kernels.decode_keys(a, b, keys, *_bits(layout))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ratio=st.sampled_from(RATIOS), with_score=st.booleans())
def test_candidate_keys_match_reference(
    clk_pairs, data: st.DataObject, ratio: tuple[int, int], with_score: bool
) -> None:
    a, b = data.draw(clk_pairs)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return  # the wrapper answers empty inputs without the kernels
    num, den = ratio
    layout = _layout(a, b, num, den, with_score=with_score)
    got, want = _keys(a, b, num, den, layout, tasks=3)
    assert got.dtype == want.dtype == np.int64
    np.testing.assert_array_equal(got, want)

    keys, bits = got, _bits(layout)
    for g, w in zip(
        kernels.decode_keys(a, b, keys, *bits),
        reference.decode_keys(a, b, keys, *bits),
        strict=True,
    ):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_all_zero_pairs_are_never_candidates() -> None:
    zeros = np.zeros((3, 16), dtype=np.uint64)
    layout = _layout(zeros, zeros, 1, 2048, with_score=True)
    assert candidate_keys(zeros, zeros, num=1, den=2048, layout=layout, tasks=2).shape == (0,)
    assert kernels.dice_pair(zeros[0], zeros[1]) == 0.0


@pytest.mark.parametrize("tasks", [1, 3])
def test_many_pairs_fill_the_slabs_and_the_scan_resumes(tasks: int) -> None:
    # All-one CLKs match every pair: 600 x 500 = 300,000 keys overflow 131,072-key slabs, so
    # tasks stop part-way through blocks and resume in later rounds.
    ones = np.full((600, 16), ONES, dtype=np.uint64)
    b = ones[:500]
    layout = _layout(ones, b, 1, 1, with_score=True)
    keys = np.sort(candidate_keys(ones, b, num=1, den=1, layout=layout, tasks=tasks))
    assert keys.shape == (300_000,)
    left, right, score = kernels.decode_keys(ones, b, keys, *_bits(layout))
    np.testing.assert_array_equal(left, np.repeat(np.arange(600), 500))
    np.testing.assert_array_equal(right, np.tile(np.arange(500), 600))
    assert (score == 1.0).all()


def test_windows_and_tiles_on_spread_popcounts(rng: np.random.Generator) -> None:
    # Popcounts from sparse to dense, and more right rows than a tile, so rows meet windows
    # that start and stop inside tiles; compared pair by pair with the plain twin.
    def spread(n: int) -> np.ndarray:
        fill = rng.uniform(0.02, 0.98, size=(n, 1))
        bits = (rng.random((n, 1024)) < fill).astype(np.uint8)
        return np.packbits(bits, axis=1, bitorder="little").view(np.uint64)

    a, b = spread(40), spread(600)
    b[::7] = a[rng.integers(0, 40, size=86)] | (1 << rng.integers(0, 64, size=(86, 1))).astype(
        np.uint64
    )  # near-copies
    for num, den in [(1, 2), (4, 5), (1, 10)]:
        got, want = _keys(a, b, num, den, _layout(a, b, num, den, with_score=True), tasks=2)
        np.testing.assert_array_equal(got, want)


@settings(max_examples=100, deadline=None)
@given(
    left=st.lists(st.integers(0, 5), max_size=40),
    k=st.integers(1, 4),
)
def test_top_k_positions_match_reference(left: list[int], k: int) -> None:
    rows = np.array(left, dtype=np.int64)
    got = kernels.top_k_positions(rows, 6, k)
    np.testing.assert_array_equal(got, reference.top_k_positions(rows, 6, k))


# --- the machine code -------------------------------------------------------------------------


def _host_has(feature: str) -> bool:
    return bool(llvm.get_host_cpu_features().get(feature, False))


X86 = platform.machine().lower() in {"x86_64", "amd64"}


@pytest.mark.skipif(
    not X86, reason="the popcnt instruction is x86-64 only; other targets lower ctpop differently"
)
@pytest.mark.skipif(not _host_has("popcnt"), reason="this CPU has no POPCNT instruction")
def test_popcount_intrinsic_emits_popcnt() -> None:
    # Numba disables inspection of code loaded from its cache, so compile fresh, uncached
    # dispatchers of the very same Python functions (and so the same intrinsic).
    clks = np.ones((2, 16), dtype=np.uint64)
    serial = numba.njit(kernels.intersection_count.py_func)
    serial(clks, 0, clks, 1)
    parallel = numba.njit(parallel=True)(kernels.popcounts.py_func)
    parallel(clks)
    for dispatcher in (serial, parallel):
        asm = dispatcher.inspect_asm(dispatcher.signatures[0])
        # popcntq, or vpopcntq where LLVM vectorises on AVX-512 VPOPCNTDQ.
        assert "popcnt" in asm, f"{dispatcher.py_func.__name__} compiled without popcnt"


@pytest.mark.skipif(not X86, reason="checks x86-64 vector instructions")
@pytest.mark.skipif(
    not _host_has("avx512vpopcntdq"), reason="this CPU has no AVX-512 vector popcount"
)
def test_tile_loops_use_vector_popcounts() -> None:
    # The tile loops are the hot loops; they must be vectorised (vpopcntq), not scalar.
    bt = np.ones((16, 64), dtype=np.uint64)
    row, cnt, pop = (
        np.ones(16, dtype=np.uint64),
        np.zeros(64, dtype=np.int64),
        np.ones(64, np.int64),
    )
    tile_1024 = numba.njit(kernels._tile_1024.py_func)
    tile_1024(row, bt, 0, 64, cnt, pop, 1, 1, 2)
    add_16 = numba.njit(kernels._add_16_words.py_func)
    add_16(row, 0, bt, 0, 64, cnt)
    for dispatcher in (tile_1024, add_16):
        asm = dispatcher.inspect_asm(dispatcher.signatures[0])
        assert "vpopcntq" in asm, f"{dispatcher.py_func.__name__} is not vectorised"
