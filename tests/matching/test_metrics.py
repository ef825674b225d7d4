"""pairwise_quality on hand-made linkages and against an O(n^2) count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from oda_fed.matching import MatchingInputError, Quality, pairwise_quality


def _arrays(*rows: list[int]) -> list[np.ndarray]:
    return [np.array(row, dtype=np.int64) for row in rows]


def test_perfect_linkage() -> None:
    truth = _arrays([10, 11, 12], [12, 10, 13], [11, 14])
    predicted = _arrays([0, 1, 2], [2, 0, 3], [1, 4])
    q = pairwise_quality(predicted, truth)
    assert q == Quality(
        precision=1.0, recall=1.0, f1=1.0, true_positives=3, predicted_pairs=3, true_pairs=3
    )


def test_false_merge_lowers_precision_only() -> None:
    truth = _arrays([1, 2], [1, 3])
    predicted = _arrays([0, 1], [0, 1])  # b1 (person 3) wrongly merged with a1 (person 2)
    q = pairwise_quality(predicted, truth)
    assert (q.true_positives, q.predicted_pairs, q.true_pairs) == (1, 2, 1)
    assert q.precision == 0.5
    assert q.recall == 1.0
    assert q.f1 == pytest.approx(2 / 3)


def test_missed_pair_lowers_recall_only() -> None:
    truth = _arrays([1, 2], [1, 2])
    predicted = _arrays([0, 1], [0, 2])  # a1 and b1 are the same person but left apart
    q = pairwise_quality(predicted, truth)
    assert (q.true_positives, q.predicted_pairs, q.true_pairs) == (1, 1, 2)
    assert q.precision == 1.0
    assert q.recall == 0.5


def test_pairs_within_one_dataset_do_not_count() -> None:
    # Two records of one dataset share an entity and a person id; no cross-dataset pair exists.
    q = pairwise_quality(_arrays([0, 0], [1]), _arrays([5, 5], [6]))
    assert (q.true_positives, q.predicted_pairs, q.true_pairs) == (0, 0, 0)
    assert (q.precision, q.recall, q.f1) == (1.0, 1.0, 1.0)


def test_nothing_predicted() -> None:
    q = pairwise_quality(_arrays([0], [1]), _arrays([7], [7]))
    assert (q.precision, q.recall, q.f1) == (1.0, 0.0, 0.0)


def test_matches_brute_force_count(rng: np.random.Generator) -> None:
    sizes = [15, 12, 9]
    predicted = [rng.integers(0, 10, n) for n in sizes]
    truth = [rng.integers(0, 8, n) for n in sizes]
    records = [(d, i) for d, n in enumerate(sizes) for i in range(n)]
    tp = linked = same = 0
    for (da, ia), (db, ib) in itertools.combinations(records, 2):
        if da == db:
            continue
        p = predicted[da][ia] == predicted[db][ib]
        t = truth[da][ia] == truth[db][ib]
        linked += p
        same += t
        tp += p and t
    q = pairwise_quality(predicted, truth)
    assert (q.true_positives, q.predicted_pairs, q.true_pairs) == (tp, linked, same)
    assert q.precision == tp / linked
    assert q.recall == tp / same


def test_rejects_mismatched_inputs() -> None:
    with pytest.raises(MatchingInputError, match="datasets"):
        pairwise_quality(_arrays([0]), _arrays([0], [1]))
    with pytest.raises(MatchingInputError, match="same length"):
        pairwise_quality(_arrays([0, 1]), _arrays([0]))
