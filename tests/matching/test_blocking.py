"""Hamming LSH blocking: kernels against plain twins, subset of all pairs, recall, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.encoding import default_field_encoding, encode_records
from oda_fed.matching import MatchingInputError, dice_candidates, reference
from oda_fed.matching.blocking import (
    BlockStats,
    LshParams,
    auto_params,
    band_positions,
    block_pairs,
    block_stats,
    blocked_candidates,
    blocked_dice_candidates,
)
from oda_fed.matching.kernels import (
    band_blocks,
    band_keys,
    pair_intersections,
    score_blocks,
)
from oda_fed.standardise import standardise_column
from oda_fed.synth import generate

FIELDS = {
    "first_name": "name",
    "last_name": "name",
    "date_of_birth": "date_of_birth",
    "sex": "sex",
    "postcode": "postcode",
}


# Plain twins of the kernels in blocking.py.


def _band_keys_plain(clks: np.ndarray, positions: np.ndarray) -> np.ndarray:
    out = []
    for row in clks:
        key = 0
        for j, pos in enumerate(positions.tolist()):
            key |= ((int(row[pos // 64]) >> (pos % 64)) & 1) << j
        out.append(key)
    return np.array(out, dtype=np.uint64)


def _band_pairs_plain(
    keys_a: np.ndarray, keys_b: np.ndarray, max_block: int
) -> tuple[set[tuple[int, int]], int, int, int]:
    kept: set[tuple[int, int]] = set()
    largest = blocks_skipped = pairs_skipped = 0
    for key in set(keys_a.tolist()) & set(keys_b.tolist()):
        rows_a = np.flatnonzero(keys_a == key).tolist()
        rows_b = np.flatnonzero(keys_b == key).tolist()
        size = len(rows_a) * len(rows_b)
        largest = max(largest, size)
        if 0 <= max_block < size:
            blocks_skipped += 1
            pairs_skipped += size
        else:
            kept |= {(i, j) for i in rows_a for j in rows_b}
    return kept, largest, blocks_skipped, pairs_skipped


def _block_pairs_plain(a: np.ndarray, b: np.ndarray, params: LshParams) -> set[tuple[int, int]]:
    found: set[tuple[int, int]] = set()
    for positions in band_positions(params, bits=64 * a.shape[1]):
        pairs, _, _, _ = _band_pairs_plain(
            _band_keys_plain(a, positions), _band_keys_plain(b, positions), -1
        )
        found |= pairs
    return found


@pytest.mark.kernel
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_band_keys_match_plain_twin(clk_pairs, data: st.DataObject) -> None:
    a, _ = data.draw(clk_pairs)
    bits = 64 * a.shape[1]
    k = data.draw(st.integers(1, min(64, bits)))
    positions = np.array(
        data.draw(st.lists(st.integers(0, bits - 1), min_size=k, max_size=k, unique=True)),
        dtype=np.int64,
    )
    np.testing.assert_array_equal(
        band_keys(a, positions[None, :])[0], _band_keys_plain(a, positions)
    )


@pytest.mark.kernel
@settings(max_examples=200, deadline=None)
@given(
    keys_a=st.lists(st.integers(0, 5), max_size=12),
    keys_b=st.lists(st.integers(0, 5), max_size=12),
    max_block=st.sampled_from([-1, 1, 2, 4]),
)
def test_band_join_matches_plain_twin(keys_a: list, keys_b: list, max_block: int) -> None:
    ka, kb = np.array(keys_a, dtype=np.uint64), np.array(keys_b, dtype=np.uint64)
    rows_a, rows_b = np.argsort(ka), np.argsort(kb)
    sa, sb = ka[rows_a], kb[rows_b]
    blocks, largest, skipped, skipped_pairs = band_blocks(sa, sb, max_block)
    got = set()
    for a0, a1, b0, b1 in blocks.tolist():
        assert len(set(sa[a0:a1].tolist()) | set(sb[b0:b1].tolist())) == 1
        got |= {(int(rows_a[x]), int(rows_b[y])) for x in range(a0, a1) for y in range(b0, b1)}
    want, w_largest, w_skipped, w_skipped_pairs = _band_pairs_plain(ka, kb, max_block)
    assert got == want
    assert (largest, skipped, skipped_pairs) == (w_largest, w_skipped, w_skipped_pairs)


def _dice_passes(a: np.ndarray, i: int, b: np.ndarray, j: int, num: int, den: int) -> bool:
    inter = bin(int.from_bytes((a[i] & b[j]).tobytes(), "little")).count("1")
    total = sum(bin(int.from_bytes(x.tobytes(), "little")).count("1") for x in (a[i], b[j]))
    return total > 0 and 2 * den * inter >= num * total


@pytest.mark.kernel
@settings(max_examples=100, deadline=None)
@given(data=st.data(), cap=st.integers(1, 6), tasks=st.integers(1, 5))
def test_score_blocks_matches_plain_twin(clk_pairs, data: st.DataObject, cap, tasks) -> None:
    """Every task, resumed round after round from a tiny buffer, writes exactly the passing pairs."""
    a, b = data.draw(clk_pairs)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return
    keys_a = np.array(data.draw(st.lists(st.integers(0, 3), min_size=len(a), max_size=len(a))))
    keys_b = np.array(data.draw(st.lists(st.integers(0, 3), min_size=len(b), max_size=len(b))))
    num, den = data.draw(st.sampled_from([(-1, 1), (4, 5), (1, 2), (1, 1)]))
    rows_a, rows_b = np.argsort(keys_a, kind="stable"), np.argsort(keys_b, kind="stable")
    blocks, _, _, _ = band_blocks(
        keys_a[rows_a].astype(np.uint64), keys_b[rows_b].astype(np.uint64), -1
    )
    stops = np.sort(np.array(data.draw(st.lists(st.integers(0, len(blocks)), min_size=tasks,
                                                 max_size=tasks)), dtype=np.int64))  # fmt: skip
    stops[-1] = len(blocks)
    resume = np.concatenate([[0], stops[:-1]]).astype(np.int64)
    rows, written, compared = (
        np.zeros(tasks, np.int64),
        np.zeros(tasks, np.int64),
        np.zeros(tasks, np.int64),
    )
    widest = int((blocks[:, 3] - blocks[:, 2]).max(initial=0))
    out = np.empty((tasks, widest + cap), dtype=np.int64)
    pops = [np.array([bin(int.from_bytes(r.tobytes(), "little")).count("1") for r in x],
                     dtype=np.int64) for x in (a, b)]  # fmt: skip
    got: list[int] = []
    for _ in range(10_000):
        if not (resume < stops).any():
            break
        score_blocks(blocks, rows_a, rows_b, a, b, pops[0], pops[1], num, den, 8, stops, resume,
                     rows, out, written, compared)  # fmt: skip
        for t in range(tasks):
            got.extend(out[t, : written[t]].tolist())
    in_blocks = [
        (int(rows_a[x]), int(rows_b[y]))
        for a0, a1, b0, b1 in blocks.tolist()
        for x in range(a0, a1)
        for y in range(b0, b1)
    ]
    want = [(i, j) for i, j in in_blocks if num < 0 or _dice_passes(a, i, b, j, num, den)]
    assert sorted((k >> 8, k & 255) for k in got) == sorted(want)
    assert int(compared.sum()) == len(in_blocks)


@pytest.mark.kernel
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_pair_intersections_match_plain_twin(clk_pairs, data: st.DataObject) -> None:
    a, b = data.draw(clk_pairs)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return
    left = np.array(data.draw(st.lists(st.integers(0, a.shape[0] - 1), max_size=10)), np.int64)
    right = np.array(
        data.draw(st.lists(st.integers(0, b.shape[0] - 1), min_size=len(left), max_size=len(left))),
        dtype=np.int64,
    )
    want = [
        bin(int.from_bytes((a[i] & b[j]).tobytes(), "little")).count("1")
        for i, j in zip(left, right, strict=True)
    ]
    assert pair_intersections(a, b, left, right).tolist() == want


@settings(max_examples=100, deadline=None)
@given(data=st.data(), bands=st.integers(1, 4), k=st.integers(1, 6), seed=st.integers(0, 5))
def test_block_pairs_matches_plain_twin(clk_pairs, data: st.DataObject, bands, k, seed) -> None:
    a, b = data.draw(clk_pairs)
    params = LshParams(bands=bands, bits_per_band=k, seed=seed)
    left, right = block_pairs(a, b, params=params)
    assert left.dtype == np.int64 and right.dtype == np.int64
    assert set(zip(left.tolist(), right.tolist(), strict=True)) == _block_pairs_plain(a, b, params)
    # Unique and sorted by left, then right.
    keys = left * max(b.shape[0], 1) + right
    assert (np.diff(keys) > 0).all()


@settings(max_examples=60, deadline=None)
@given(data=st.data(), bands=st.integers(1, 4), k=st.integers(1, 8))
def test_blocked_candidates_are_all_pairs_restricted_to_blocks(
    clk_pairs, data: st.DataObject, bands: int, k: int
) -> None:
    a, b = data.draw(clk_pairs)
    threshold = data.draw(st.sampled_from([1.0, 0.8, 2 / 3, 0.5, 1e-9]))
    params = LshParams(bands=bands, bits_per_band=k, seed=3)
    got = blocked_dice_candidates(a, b, threshold=threshold, params=params)
    full = reference.dice_candidates(a, b, threshold=threshold)
    left, right = block_pairs(a, b, params=params)
    blocked = set(zip(left.tolist(), right.tolist(), strict=True))
    keep = np.array(
        [(i, j) in blocked for i, j in zip(full.left.tolist(), full.right.tolist(), strict=True)],
        dtype=bool,
    )
    # Same pairs, same scores, same order as the all-pairs result filtered to the blocks.
    np.testing.assert_array_equal(got.left, full.left[keep])
    np.testing.assert_array_equal(got.right, full.right[keep])
    np.testing.assert_allclose(got.score, full.score[keep], rtol=0, atol=1e-12)


def test_identical_clks_always_share_a_block(rng: np.random.Generator) -> None:
    a = rng.integers(0, 2**64, size=(200, 16), dtype=np.uint64)
    b = np.ascontiguousarray(a[rng.permutation(200)])
    # One band of many bits: random non-identical rows practically never collide.
    left, right = block_pairs(a, b, params=LshParams(bands=1, bits_per_band=64, seed=9))
    same = (a[left] == b[right]).all(axis=1)
    assert same.all() and len(left) == 200


def test_same_seed_same_pairs_other_seed_other_bands(rng: np.random.Generator) -> None:
    a = rng.integers(0, 2**64, size=(300, 2), dtype=np.uint64)
    b = rng.integers(0, 2**64, size=(300, 2), dtype=np.uint64)
    params = LshParams(bands=5, bits_per_band=6, seed=11)
    first, second = block_pairs(a, b, params=params), block_pairs(a, b, params=params)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(
        band_positions(params, bits=128), band_positions(LshParams(5, 6, seed=12), bits=128)
    )


def test_empty_inputs() -> None:
    some = np.ones((3, 16), dtype=np.uint64)
    none = np.empty((0, 16), dtype=np.uint64)
    params = LshParams(bands=3, bits_per_band=10)
    for a, b in ((none, some), (some, none), (none, none)):
        left, right = block_pairs(a, b, params=params)
        assert left.shape == right.shape == (0,)
        assert len(blocked_dice_candidates(a, b, threshold=0.8)) == 0
        stats = block_stats(a, b, params=params)
        assert stats.pairs_total == stats.pairs_compared == 0
        assert stats.pair_completeness is None


def test_max_block_skips_and_counts_giant_blocks() -> None:
    zeros = np.zeros((5, 1), dtype=np.uint64)
    ones = np.full((2, 1), 2**64 - 1, dtype=np.uint64)
    a = b = np.concatenate([zeros, ones])
    params = LshParams(bands=2, bits_per_band=8)
    stats = block_stats(a, b, params=params, max_block=10)
    # The all-zero block (25 pairs) is skipped in both bands; the all-one block (4) is kept.
    assert (stats.blocks_skipped, stats.pairs_skipped, stats.largest_block) == (2, 50, 25)
    left, right = block_pairs(a, b, params=params, max_block=10)
    assert set(zip(left.tolist(), right.tolist(), strict=True)) == {
        (i, j) for i in (5, 6) for j in (5, 6)
    }


def test_giant_blocks_are_skipped_and_counted_alike_in_units_of_bands(executor) -> None:
    """On a cluster the bands run in spans of a few; the skipped blocks and the largest block
    are still counted over all of them, and the candidates are the same."""
    zeros = np.zeros((5, 1), dtype=np.uint64)
    ones = np.full((2, 1), 2**64 - 1, dtype=np.uint64)
    a = b = np.concatenate([zeros, ones])
    params = LshParams(bands=9, bits_per_band=8)
    found, stats = blocked_candidates(
        a, b, threshold=0.5, params=params, max_block=10, executor=executor
    )
    assert (stats.blocks_skipped, stats.pairs_skipped, stats.largest_block) == (9, 225, 25)
    assert set(zip(found.left.tolist(), found.right.tolist(), strict=True)) == {
        (i, j) for i in (5, 6) for j in (5, 6)
    }


def test_auto_params_meets_the_target_at_the_threshold() -> None:
    for threshold, fill in ((0.8, 0.4), (0.9, 0.3), (0.7, 0.25), (1.0, 0.5)):
        params = auto_params(threshold=threshold, fill=fill, bits=1024, target_recall=0.99)
        p = 1 - 2 * fill * (1 - threshold)
        k, bands = params.bits_per_band, params.bands
        assert 1 - (1 - p**k) ** bands >= 0.99
        # L is the smallest that does it.
        assert bands == 1 or 1 - (1 - p**k) ** (bands - 1) < 0.99
        assert (fill**2 + (1 - fill) ** 2) ** k <= 2**-20 or k == 64
    assert auto_params(threshold=0.8, fill=0.4, bits=8).bits_per_band == 8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0, "fill": 0.4, "bits": 1024},
        {"threshold": 0.8, "fill": 1.0, "bits": 1024},
        {"threshold": 0.8, "fill": 0.4, "bits": 0},
        {"threshold": 0.8, "fill": 0.4, "bits": 1024, "target_recall": 1.0},
        {"threshold": "0.8", "fill": 0.4, "bits": 1024},
    ],
)
def test_auto_params_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(MatchingInputError):
        auto_params(**kwargs)


def test_bad_inputs_are_typed_errors() -> None:
    a = np.zeros((2, 1), dtype=np.uint64)
    with pytest.raises(MatchingInputError):
        LshParams(bands=0, bits_per_band=4)
    with pytest.raises(MatchingInputError):
        LshParams(bands=1, bits_per_band=65)
    with pytest.raises(MatchingInputError):
        block_pairs(a.astype(np.int64), a, params=LshParams(bands=1, bits_per_band=4))
    with pytest.raises(MatchingInputError):
        block_pairs(a, np.zeros((2, 2), dtype=np.uint64), params=LshParams(1, 4))
    with pytest.raises(MatchingInputError):
        block_pairs(a, a, params=LshParams(1, 4), max_block=0)


def _realistic(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray, set[tuple[int, int]]]:
    data = generate(population=2 * n + 500, partners=2, seed=seed, errors="medium")
    fields = [default_field_encoding(name, kind) for name, kind in FIELDS.items()]
    person = dict(zip(data.truth["record_id"], data.truth["person_id"], strict=True))
    sides, people = [], []
    for profile in data.profiles:
        frame = data.partners[profile.id].iloc[:n]
        table = {}
        for name, kind in FIELDS.items():
            fmt = profile.date_format if kind == "date_of_birth" else None
            clean, _ = standardise_column(frame[profile.columns[name]], kind, fmt=fmt)
            table[name] = clean.tolist()
        sides.append(
            encode_records(
                table, fields=fields, secret=b"blocking test secret, 32 bytes!!", context="t"
            )
        )
        people.append([person[r] for r in frame[profile.record_id_column]])
    rows_b: dict[str, list[int]] = {}
    for j, p in enumerate(people[1]):
        rows_b.setdefault(p, []).append(j)
    truth = {(i, j) for i, p in enumerate(people[0]) for j in rows_b.get(p, [])}
    return sides[0], sides[1], truth


def test_recall_on_realistic_clks_at_auto_params() -> None:
    a, b, truth = _realistic(2000, seed=5)
    threshold = 0.8
    full = dice_candidates(a, b, threshold=threshold)
    got = blocked_dice_candidates(a, b, threshold=threshold)
    full_pairs = set(zip(full.left.tolist(), full.right.tolist(), strict=True))
    got_pairs = set(zip(got.left.tolist(), got.right.tolist(), strict=True))
    assert got_pairs <= full_pairs
    true_full = full_pairs & truth
    assert len(true_full) > 500  # the data really has matches to find
    assert len(got_pairs & true_full) >= 0.98 * len(true_full)
    assert len(got_pairs) >= 0.98 * len(full_pairs)


def test_block_stats_on_realistic_clks() -> None:
    a, b, truth = _realistic(1000, seed=6)
    fill = float(np.mean([bin(int(w)).count("1") for w in a.ravel()])) / 64
    params = auto_params(threshold=0.8, fill=fill, bits=1024)
    left, right = zip(*sorted(truth), strict=True)
    stats = block_stats(a, b, params=params, truth=(np.array(left), np.array(right)))
    assert isinstance(stats, BlockStats)
    assert stats.pairs_total == 1000 * 1000
    assert math.isclose(stats.reduction_ratio, 1 - stats.pairs_compared / stats.pairs_total)
    # Pairs are counted once per band they share: at least the distinct blocked pairs.
    assert stats.pairs_compared >= len(block_pairs(a, b, params=params)[0])
    # Repeats dominate at this size: each true pair is scored in most of the ~200 bands.
    assert stats.reduction_ratio > 0.9
    assert stats.pair_completeness is not None and stats.pair_completeness > 0.95
    assert (stats.bands, stats.bits_per_band) == (params.bands, params.bits_per_band)
