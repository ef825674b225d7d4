"""dice_candidates: exact agreement with the reference, threshold semantics, input checks."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.errors import InputDataError
from oda_fed.matching import (
    Candidates,
    MatchingInputError,
    dice_candidates,
    dice_score,
    reference,
    threshold_ratio,
)
from oda_fed.matching.candidates import KeyLayout, best_two_scores, find_candidates, key_layout


def _assert_same(got: Candidates, want: Candidates) -> None:
    assert got.left.dtype == np.int64 and got.right.dtype == np.int64
    assert got.score.dtype == np.float64
    np.testing.assert_array_equal(got.left, want.left)
    np.testing.assert_array_equal(got.right, want.right)
    np.testing.assert_allclose(got.score, want.score, rtol=0, atol=1e-12)


def _thresholds(data: st.DataObject, a: np.ndarray, b: np.ndarray) -> float:
    exact = [reference.dice_pair(x, y) for x in a for y in b]
    exact = [d for d in exact if d > 0]
    choices = [st.sampled_from([1.0, 0.8, 2 / 3, 0.5, 1e-9]), st.floats(0, 1, exclude_min=True)]
    if exact:
        choices.append(st.sampled_from(exact))
    return data.draw(st.one_of(choices))


@pytest.mark.kernel
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_matches_reference(clk_pairs, data: st.DataObject) -> None:
    a, b = data.draw(clk_pairs)
    # Thresholds equal to a score that occurs put pairs exactly on the boundary.
    threshold = _thresholds(data, a, b)
    got = dice_candidates(a, b, threshold=threshold)
    _assert_same(got, reference.dice_candidates(a, b, threshold=threshold))
    assert (got.score >= threshold).all()


@pytest.mark.kernel
@settings(max_examples=200, deadline=None)
@given(data=st.data(), top_k=st.integers(1, 4))
def test_top_k_matches_reference(clk_pairs, data: st.DataObject, top_k: int) -> None:
    # The strategy's duplicates and all-one rows make ties common, so tie-breaking is exercised.
    a, b = data.draw(clk_pairs)
    threshold = _thresholds(data, a, b)
    got = dice_candidates(a, b, threshold=threshold, top_k=top_k)
    _assert_same(got, reference.dice_candidates(a, b, threshold=threshold, top_k=top_k))
    assert (np.bincount(got.left, minlength=1) <= top_k).all()


@pytest.mark.kernel
@settings(max_examples=150, deadline=None)
@given(data=st.data(), top_k=st.one_of(st.none(), st.integers(1, 3)))
def test_path_without_score_in_the_key_matches_reference(
    clk_pairs, data: st.DataObject, top_k: int | None
) -> None:
    # Inputs too large for an exact score rank in the key take this path; force it here.
    a, b = data.draw(clk_pairs)
    threshold = _thresholds(data, a, b)
    num, den = threshold_ratio(threshold, words=a.shape[1])
    layout = key_layout(n_a=a.shape[0], n_b=b.shape[0], words=a.shape[1], num=num, den=den)
    plain = KeyLayout(score_bits=0, right_bits=layout.right_bits, pair_bits=layout.pair_bits)
    got = find_candidates(a, b, num=num, den=den, top_k=top_k, layout=plain)
    _assert_same(got, reference.dice_candidates(a, b, threshold=threshold, top_k=top_k))


def test_top_k_ties_go_to_the_lower_right_index() -> None:
    x = np.array([[0b1111]], dtype=np.uint64)
    y = np.array([[0b0111]], dtype=np.uint64)
    b = np.concatenate([y, x, y, x, x])  # right rows 1, 3 and 4 tie at Dice 1.0
    found = dice_candidates(x, b, threshold=0.5, top_k=2)
    assert found.right.tolist() == [1, 3]
    assert found.score.tolist() == [1.0, 1.0]
    found = dice_candidates(x, b, threshold=0.5, top_k=4)
    assert found.right.tolist() == [1, 3, 4, 0]
    assert len(dice_candidates(x, b, threshold=0.5, top_k=100)) == 5


def test_top_k_is_per_left_row_and_keeps_the_global_order() -> None:
    x = np.array([[0b1111]], dtype=np.uint64)
    y = np.array([[0b0111]], dtype=np.uint64)
    a = np.concatenate([y, x])
    b = np.concatenate([y, x, x])
    found = dice_candidates(a, b, threshold=0.5, top_k=1)
    assert list(zip(found.left.tolist(), found.right.tolist(), strict=True)) == [(0, 0), (1, 1)]


@pytest.mark.parametrize("top_k", [0, -1, 1.5, True, "2"])
def test_rejects_bad_top_k(top_k: object) -> None:
    clks = np.zeros((2, 16), dtype=np.uint64)
    with pytest.raises(MatchingInputError, match="top_k"):
        dice_candidates(clks, clks, threshold=0.8, top_k=top_k)  # type: ignore[arg-type]


def test_key_layout() -> None:
    layout = key_layout(n_a=10_000, n_b=10_000, words=16, num=1, den=2)
    assert layout == KeyLayout(score_bits=22, right_bits=14, pair_bits=28)
    # 2**41 pairs still fit next to the rank of Dice 0.5; 2**42 do not, and drop the rank.
    assert key_layout(n_a=2**20, n_b=2**21, words=16, num=1, den=2).score_bits == 22
    assert key_layout(n_a=2**21, n_b=2**21, words=16, num=1, den=2).score_bits == 0
    assert key_layout(n_a=1, n_b=1, words=2048, num=1, den=1).score_bits == 0
    with pytest.raises(MatchingInputError, match="too many"):
        key_layout(n_a=2**32, n_b=2**32, words=16, num=1, den=2)


@pytest.mark.kernel
@pytest.mark.parametrize("words", [1, 3, 5, 16, 20, 32])
def test_every_clk_length_matches_reference(words: int, rng: np.random.Generator) -> None:
    # 16-word groups, 4-word groups and single words all take part for some of these lengths.
    a = rng.integers(0, 2**64, size=(30, words), dtype=np.uint64)
    keep = rng.integers(0, 2**64, size=(30, words), dtype=np.uint64)
    b = np.concatenate(
        [
            a & (keep | (keep >> np.uint64(1))),
            a[:4],
            rng.integers(0, 2**64, size=(9, words), dtype=np.uint64),
        ]
    )
    for threshold in (0.5, 0.7, 0.9, 1.0):
        got = dice_candidates(a, b, threshold=threshold)
        _assert_same(got, reference.dice_candidates(a, b, threshold=threshold))
    assert len(dice_candidates(a, b, threshold=0.7)) >= 20  # not a vacuous comparison


@pytest.mark.kernel
def test_larger_random_input_matches_reference(rng: np.random.Generator) -> None:
    a = rng.integers(0, 2**64, size=(60, 16), dtype=np.uint64)
    # Noisy copies of a (each bit cleared with probability 1/4) give scores spread around 0.85.
    noise = rng.integers(0, 2**64, size=a.shape, dtype=np.uint64)
    b = np.concatenate([a & (noise | (noise << np.uint64(1))), a[:5], np.zeros((2, 16), np.uint64)])
    for threshold in (0.5, 0.8, 0.86, 1.0):
        got = dice_candidates(a, b, threshold=threshold)
        _assert_same(got, reference.dice_candidates(a, b, threshold=threshold))
    assert len(dice_candidates(a, b, threshold=0.5)) > 60


def test_dice_exactly_at_threshold_is_included() -> None:
    a = np.array([[0b1111, 0]], dtype=np.uint64)  # 4 bits
    b = np.array([[0b111111, 0], [0b1111111, 0]], dtype=np.uint64)  # 6 and 7 bits
    found = dice_candidates(a, b, threshold=0.8)  # Dice = 8/10 and 8/11
    assert found.left.tolist() == [0]
    assert found.right.tolist() == [0]
    assert found.score.tolist() == [0.8]


def test_order_is_score_desc_then_left_then_right() -> None:
    x = np.array([[0b1111]], dtype=np.uint64)
    y = np.array([[0b0111]], dtype=np.uint64)
    a = np.concatenate([y, x, x])
    b = np.concatenate([x, y, x])
    found = dice_candidates(a, b, threshold=0.5)
    pairs = list(zip(found.score.tolist(), found.left.tolist(), found.right.tolist(), strict=True))
    assert pairs == sorted(pairs, key=lambda p: (-p[0], p[1], p[2]))
    assert pairs[:4] == [(1.0, 0, 1), (1.0, 1, 0), (1.0, 1, 2), (1.0, 2, 0)]


def test_all_zero_and_all_one_clks() -> None:
    zeros = np.zeros((2, 16), dtype=np.uint64)
    ones = np.full((2, 16), np.iinfo(np.uint64).max, dtype=np.uint64)
    assert len(dice_candidates(zeros, zeros, threshold=1e-9)) == 0
    assert len(dice_candidates(zeros, ones, threshold=1e-9)) == 0
    found = dice_candidates(ones, ones, threshold=1.0)
    assert found.score.tolist() == [1.0] * 4
    assert dice_score(zeros[0], zeros[1]) == 0.0
    assert dice_score(ones[0], ones[1]) == 1.0


@pytest.mark.parametrize("shapes", [((0, 16), (5, 16)), ((5, 16), (0, 16)), ((0, 16), (0, 16))])
def test_empty_inputs(shapes: tuple[tuple[int, int], tuple[int, int]]) -> None:
    a, b = (np.zeros(shape, dtype=np.uint64) for shape in shapes)
    found = dice_candidates(a, b, threshold=0.8)
    assert len(found) == 0
    assert found.left.dtype == np.int64 and found.score.dtype == np.float64


@pytest.mark.parametrize(
    ("a", "message"),
    [
        (np.zeros((2, 16), dtype=np.int64), "dtype uint64"),
        (np.zeros((2, 16), dtype=np.uint32), "dtype uint64"),
        (np.zeros(16, dtype=np.uint64), "2-D"),
        (np.zeros((2, 2, 16), dtype=np.uint64), "2-D"),
        (np.zeros((2, 32), dtype=np.uint64)[:, ::2], "C-contiguous"),
        (np.asfortranarray(np.zeros((3, 16), dtype=np.uint64)), "C-contiguous"),
        (np.zeros((2, 8), dtype=np.uint64), "same CLK length"),
        (np.zeros((2, 0), dtype=np.uint64), "0 words"),
        ([[0] * 16], "numpy array"),
    ],
)
def test_rejects_bad_arrays(a: np.ndarray, message: str) -> None:
    b = np.zeros((2, 16), dtype=np.uint64)
    with pytest.raises(MatchingInputError, match=message):
        dice_candidates(a, b, threshold=0.8)


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.5, math.nan, math.inf, True, "0.8"])
def test_rejects_bad_threshold(threshold: object) -> None:
    clks = np.zeros((2, 16), dtype=np.uint64)
    with pytest.raises(MatchingInputError, match="threshold"):
        dice_candidates(clks, clks, threshold=threshold)  # type: ignore[arg-type]


def test_errors_are_typed_and_value_errors() -> None:
    assert issubclass(MatchingInputError, InputDataError)
    assert issubclass(MatchingInputError, ValueError)


def _brute_force_ratio(threshold: float, max_den: int) -> tuple[int, int]:
    """Smallest p/q with q <= max_den whose float is >= threshold, by trying every q."""
    smallest = []
    for q in range(1, max_den + 1):
        p = next(p for p in range(math.floor(threshold * q) - 1, q + 1) if p / q >= threshold)
        smallest.append(Fraction(p, q))
    best = min(smallest)
    return best.numerator, best.denominator


@settings(max_examples=60, deadline=None)
@given(
    threshold=st.one_of(
        st.floats(0, 1, exclude_min=True),
        # Exact Dice values 2i/s for CLKs of up to 1024 bits.
        st.integers(2, 2048).flatmap(lambda s: st.integers(1, s // 2).map(lambda i: 2 * i / s)),
        st.sampled_from([0.8, 2 / 3, 1 / 3, 0.1 + 0.2, 1.0, 5e-324, math.nextafter(0.5, 1)]),
    ),
    words=st.sampled_from([1, 2, 16]),
)
def test_threshold_ratio_is_smallest_fraction_at_or_above(threshold: float, words: int) -> None:
    assert threshold_ratio(threshold, words=words) == _brute_force_ratio(threshold, 128 * words)


def test_threshold_ratio_examples() -> None:
    assert threshold_ratio(0.8, words=16) == (4, 5)
    assert threshold_ratio(2 / 3, words=16) == (2, 3)
    assert threshold_ratio(1.0, words=16) == (1, 1)
    assert threshold_ratio(0.85, words=16) == (17, 20)


def test_dice_score() -> None:
    x = np.array([0b1111, 0], dtype=np.uint64)
    y = np.array([0b0111, 1], dtype=np.uint64)
    assert dice_score(x, y) == pytest.approx(2 * 3 / 8)
    assert dice_score(x, x) == 1.0
    with pytest.raises(MatchingInputError, match="same CLK length"):
        dice_score(x, np.zeros(3, dtype=np.uint64))
    with pytest.raises(MatchingInputError, match="1-D uint64"):
        dice_score(x.astype(np.int64), y)


@pytest.mark.kernel
@settings(max_examples=150, deadline=None)
@given(data=st.data(), threshold=st.sampled_from([1.0, 0.8, 2 / 3, 0.5, 1e-9]))
def test_best_two_scores_match_a_plain_scan(clk_pairs, data: st.DataObject, threshold) -> None:
    a, b = data.draw(clk_pairs)
    best, second = best_two_scores(a, b, threshold=threshold)
    assert best.shape == second.shape == (a.shape[0],)
    for i in range(a.shape[0]):
        scores = sorted(
            (s for s in (reference.dice_pair(a[i], b[j]) for j in range(b.shape[0]))
             if s >= threshold and s > 0),
            reverse=True,
        )  # fmt: skip
        want = (scores + [math.nan, math.nan])[:2]
        np.testing.assert_allclose([best[i], second[i]], want, rtol=0, atol=1e-12)
