"""resolve: greedy 1-to-1 for two datasets, one record per dataset, determinism, scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from oda_fed.matching import (
    Candidates,
    Clustering,
    MatchingInputError,
    PairCandidates,
    resolve,
)


def _pair(source_a: int, source_b: int, edges: list[tuple[int, int, float]]) -> PairCandidates:
    left, right, score = zip(*edges, strict=True) if edges else ((), (), ())
    return PairCandidates(
        source_a=source_a,
        source_b=source_b,
        candidates=Candidates(
            left=np.array(left, dtype=np.int64),
            right=np.array(right, dtype=np.int64),
            score=np.array(score, dtype=np.float64),
        ),
    )


def _random_pair(
    rng: np.random.Generator, *, source_a: int, source_b: int, sizes: list[int], n_edges: int
) -> PairCandidates:
    # Scores from a small set, so ties are frequent and the tie-break order matters.
    return PairCandidates(
        source_a=source_a,
        source_b=source_b,
        candidates=Candidates(
            left=rng.integers(0, sizes[source_a], n_edges),
            right=rng.integers(0, sizes[source_b], n_edges),
            score=rng.choice([0.8, 0.85, 0.9, 0.95, 1.0], n_edges),
        ),
    )


def _greedy_one_to_one(pair: PairCandidates) -> dict[int, tuple[int, float]]:
    """Textbook greedy matching: best score first, ties by (left, right); both ends unused."""
    found = pair.candidates
    edges = sorted(
        zip(found.score.tolist(), found.left.tolist(), found.right.tolist(), strict=True),
        key=lambda e: (-e[0], e[1], e[2]),
    )
    used_left: set[int] = set()
    used_right: set[int] = set()
    matched = {}
    for score, left, right in edges:
        if left not in used_left and right not in used_right:
            used_left.add(left)
            used_right.add(right)
            matched[left] = (right, score)
    return matched


def _assert_same(x: Clustering, y: Clustering) -> None:
    assert x.n_entities == y.n_entities
    for lx, ly in zip(x.labels, y.labels, strict=True):
        np.testing.assert_array_equal(lx, ly)
    for sx, sy in zip(x.scores, y.scores, strict=True):
        np.testing.assert_array_equal(sx, sy)  # NaN == NaN here


def _assert_numbered_by_first_appearance(result: Clustering) -> None:
    labels = np.concatenate(result.labels)
    _, first = np.unique(labels, return_index=True)
    np.testing.assert_array_equal(labels[np.sort(first)], np.arange(result.n_entities))


@pytest.mark.parametrize("seed", range(5))
def test_two_datasets_is_greedy_one_to_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = [30, 25]
    pair = _random_pair(rng, source_a=0, source_b=1, sizes=sizes, n_edges=120)
    result = resolve(sizes, [pair])
    matched = _greedy_one_to_one(pair)

    labels_a, labels_b = result.labels
    for left in range(sizes[0]):
        together = np.flatnonzero(labels_b == labels_a[left]).tolist()
        if left in matched:
            right, score = matched[left]
            assert together == [right]
            assert result.scores[0][left] == score
            assert result.scores[1][right] == score
        else:
            assert together == []
            assert math.isnan(result.scores[0][left])
    assert result.n_entities == sum(sizes) - len(matched)
    _assert_numbered_by_first_appearance(result)


def test_three_datasets_never_put_two_records_of_one_dataset_together(
    rng: np.random.Generator,
) -> None:
    sizes = [40, 35, 30]
    pairs = [
        _random_pair(rng, source_a=a, source_b=b, sizes=sizes, n_edges=150)
        for a, b in ((0, 1), (0, 2), (1, 2))
    ]
    result = resolve(sizes, pairs)
    for labels in result.labels:
        assert len(np.unique(labels)) == len(labels)
    # With this many edges the constraint must actually have refused merges: some entity spans
    # all three datasets, and without the constraint there are fewer, larger entities.
    shared = set(result.labels[0]) & set(result.labels[1]) & set(result.labels[2])
    assert shared
    assert resolve(sizes, pairs, one_per_source=False).n_entities < result.n_entities
    _assert_numbered_by_first_appearance(result)


def test_without_one_per_source_entities_are_connected_components(
    rng: np.random.Generator,
) -> None:
    sizes = [20, 20, 20]
    pairs = [
        _random_pair(rng, source_a=a, source_b=b, sizes=sizes, n_edges=12)
        for a, b in ((0, 1), (1, 2), (2, 0), (1, 1))
    ]
    result = resolve(sizes, pairs, one_per_source=False)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    component = list(range(sum(sizes)))

    def root(x: int) -> int:
        while component[x] != x:
            x = component[x]
        return x

    for pair in pairs:
        for left, right in zip(pair.candidates.left, pair.candidates.right, strict=True):
            ra = root(int(offsets[pair.source_a] + left))
            rb = root(int(offsets[pair.source_b] + right))
            component[max(ra, rb)] = min(ra, rb)
    labels = np.concatenate(result.labels)
    roots = [root(x) for x in range(sum(sizes))]
    for x in range(sum(sizes)):
        for y in range(sum(sizes)):
            assert (labels[x] == labels[y]) == (roots[x] == roots[y])


def test_deterministic_and_independent_of_edge_order(rng: np.random.Generator) -> None:
    sizes = [25, 25, 25]
    pairs = [
        _random_pair(rng, source_a=a, source_b=b, sizes=sizes, n_edges=80)
        for a, b in ((0, 1), (0, 2), (1, 2))
    ]
    first = resolve(sizes, pairs)
    _assert_same(first, resolve(sizes, pairs))

    # Shuffle edges within each pair, the pairs themselves, and flip one pair's orientation.
    shuffled = []
    for pair in pairs:
        order = rng.permutation(len(pair.candidates))
        found = pair.candidates
        shuffled.append(
            PairCandidates(
                source_a=pair.source_a,
                source_b=pair.source_b,
                candidates=Candidates(
                    left=found.left[order], right=found.right[order], score=found.score[order]
                ),
            )
        )
    flipped = shuffled[0]
    shuffled[0] = PairCandidates(
        source_a=flipped.source_b,
        source_b=flipped.source_a,
        candidates=Candidates(
            left=flipped.candidates.right,
            right=flipped.candidates.left,
            score=flipped.candidates.score,
        ),
    )
    _assert_same(first, resolve(sizes, shuffled[::-1]))


def test_no_pairs_gives_singletons() -> None:
    result = resolve([3, 0, 2], [])
    assert result.n_entities == 5
    assert [labels.tolist() for labels in result.labels] == [[0, 1, 2], [], [3, 4]]
    assert all(labels.dtype == np.int64 for labels in result.labels)
    assert all(np.isnan(scores).all() and scores.dtype == np.float64 for scores in result.scores)


def test_scores_are_those_of_the_joining_edge() -> None:
    # a0-b0 (0.9) forms an entity; b0-c0 (0.8) adds c0; a1-b1 (0.7) forms a second entity;
    # a0-c1 (0.95) first joins a0 and c1; a1-b0 (0.85) is refused (b0 already has an a).
    pairs = [
        _pair(0, 1, [(0, 0, 0.9), (1, 1, 0.7), (1, 0, 0.85)]),
        _pair(1, 2, [(0, 0, 0.8)]),
        _pair(0, 2, [(0, 1, 0.95)]),
    ]
    result = resolve([2, 2, 3], pairs)
    assert [labels.tolist() for labels in result.labels] == [[0, 1], [0, 1], [2, 0, 3]]
    assert result.n_entities == 4
    assert result.scores[0].tolist() == [0.95, 0.7]
    assert result.scores[1].tolist() == [0.9, 0.7]
    np.testing.assert_array_equal(result.scores[2], [np.nan, 0.95, np.nan])


def test_same_dataset_edges_only_merge_without_one_per_source() -> None:
    pairs = [_pair(0, 0, [(0, 1, 0.9)])]
    assert resolve([2], pairs).n_entities == 2
    assert resolve([2], pairs, one_per_source=False).labels[0].tolist() == [0, 0]


def test_more_than_64_datasets() -> None:
    # A chain 0-1-...-69 through record 0 of each dataset; dataset 69 (past the first 64-bit word
    # of the per-entity dataset bitset) also has record 1, linked first to record 0 of dataset 68.
    sizes = [1] * 69 + [2]
    pairs = [_pair(d, d + 1, [(0, 0, 0.9)]) for d in range(69)]
    pairs.append(_pair(68, 69, [(0, 1, 0.95)]))
    result = resolve(sizes, pairs)
    # The chain's last link would put records 0 and 1 of dataset 69 together, so it is refused.
    assert result.labels[69].tolist() == [1, 0]
    assert all(labels.tolist() == [0] for labels in result.labels[:69])
    assert result.n_entities == 2
    assert resolve(sizes, pairs, one_per_source=False).n_entities == 1


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([_pair(0, 2, [(0, 0, 0.9)])], "out of range for 2 datasets"),
        ([_pair(0, 1, [(3, 0, 0.9)])], "left: row index out of range"),
        ([_pair(0, 1, [(0, -1, 0.9)])], "right: row index out of range"),
        ([_pair(0, 1, [(0, 0, math.nan)])], "NaN"),
    ],
)
def test_rejects_bad_pairs(pairs: list[PairCandidates], message: str) -> None:
    with pytest.raises(MatchingInputError, match=message):
        resolve([2, 2], pairs)
