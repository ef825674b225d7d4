"""The Numba kernels agree exactly with their plain-Python twins, and popcount is a real popcnt."""

from __future__ import annotations

import platform

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llvmlite import binding as llvm

from oda_fed.matching import kernels, reference

pytestmark = pytest.mark.kernel

RATIOS = [(1, 1), (4, 5), (3, 4), (2, 3), (1, 2), (1, 2048), (17, 20)]


def test_popcounts_match_reference(rng: np.random.Generator) -> None:
    clks = rng.integers(0, 2**64, size=(64, 16), dtype=np.uint64)
    clks[0] = 0
    clks[1] = np.iinfo(np.uint64).max
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


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ratio=st.sampled_from(RATIOS))
def test_candidate_pairs_match_reference(clk_pairs, data: st.DataObject, ratio) -> None:
    a, b = data.draw(clk_pairs)
    num, den = ratio
    pop_a, pop_b = kernels.popcounts(a), kernels.popcounts(b)

    counts = kernels.count_candidates(a, b, pop_a, pop_b, num, den)
    np.testing.assert_array_equal(counts, reference.count_candidates(a, b, pop_a, pop_b, num, den))

    got = kernels.candidate_pairs(a, b, num, den)
    want = reference.candidate_pairs(a, b, num, den)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
    assert got[0].shape[0] == counts.sum()


def test_all_zero_pairs_are_never_candidates() -> None:
    zeros = np.zeros((3, 16), dtype=np.uint64)
    left, right, score = kernels.candidate_pairs(zeros, zeros, 1, 2048)
    assert left.shape == right.shape == score.shape == (0,)
    assert kernels.dice_pair(zeros[0], zeros[1]) == 0.0


def test_fill_writes_each_row_into_its_own_slice(rng: np.random.Generator) -> None:
    a = rng.integers(0, 2**64, size=(20, 16), dtype=np.uint64)
    b = np.concatenate([a[::2], a[1::3]])  # every row of a has 0, 1 or 2 exact matches
    pop_a, pop_b = kernels.popcounts(a), kernels.popcounts(b)
    counts = kernels.count_candidates(a, b, pop_a, pop_b, 9, 10)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    left = np.full(offsets[-1], -1, dtype=np.int64)
    right = np.full(offsets[-1], -1, dtype=np.int64)
    score = np.full(offsets[-1], np.nan)
    kernels.fill_candidates(a, b, pop_a, pop_b, 9, 10, offsets, left, right, score)
    for i in range(a.shape[0]):
        rows = slice(offsets[i], offsets[i + 1])
        assert (left[rows] == i).all()
        np.testing.assert_array_equal(b[right[rows]], np.repeat(a[i : i + 1], counts[i], axis=0))
    assert (score == 1.0).all()


def _host_has_popcnt() -> bool:
    return bool(llvm.get_host_cpu_features().get("popcnt", False))


@pytest.mark.skipif(
    platform.machine().lower() not in {"x86_64", "amd64"},
    reason="the popcnt instruction is x86-64 only; other targets lower ctpop differently",
)
@pytest.mark.skipif(not _host_has_popcnt(), reason="this CPU has no POPCNT instruction")
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
