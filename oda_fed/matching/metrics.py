"""Linkage quality against ground truth: pairwise precision, recall and F1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from oda_fed.errors import InputDataError
from oda_fed.matching.candidates import MatchingInputError


@dataclass(frozen=True)
class Quality:
    """Pairwise linkage quality over cross-dataset record pairs.

    ``precision`` is 1.0 when nothing is predicted linked and ``recall`` is 1.0 when nothing is
    truly linked (no pair was wrongly linked or missed); ``f1`` is 0.0 when both are 0.
    """

    precision: float
    recall: float
    f1: float
    true_positives: int
    predicted_pairs: int
    true_pairs: int


def _cross_dataset_pairs(group: np.ndarray, dataset: np.ndarray) -> int:
    """Unordered pairs of records in one group but different datasets, counted via group sizes."""
    if group.shape[0] == 0:
        return 0
    _, group_sizes = np.unique(group, return_counts=True)
    _, cell_sizes = np.unique(np.stack([group, dataset]), axis=1, return_counts=True)
    # Pairs within a group minus those within one (group, dataset) cell.
    all_pairs = int((group_sizes * (group_sizes - 1)).sum()) // 2
    same_dataset = int((cell_sizes * (cell_sizes - 1)).sum()) // 2
    return all_pairs - same_dataset


def pairwise_quality(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> Quality:
    """Pairwise precision and recall of a linkage over record pairs from different datasets.

    A pair is predicted-linked when both records have the same entity and truly linked when both
    have the same person id. Counting uses group sizes, so it is linear-logarithmic, not
    quadratic, in the number of records.

    Parameters
    ----------
    predicted : sequence of numpy.ndarray
        ``predicted[d][i]``: entity index of record ``i`` of dataset ``d``.
    truth : sequence of numpy.ndarray
        ``truth[d][i]``: true person id (``int64``) of the same record.

    Returns
    -------
    Quality

    Raises
    ------
    MatchingInputError
        When ``predicted`` and ``truth`` differ in the number of datasets or of records.

    Examples
    --------
    >>> predicted = [np.array([0, 1]), np.array([0, 1])]
    >>> truth = [np.array([7, 8]), np.array([7, 9])]
    >>> q = pairwise_quality(predicted, truth)
    >>> q.precision, q.recall, q.true_positives, q.predicted_pairs, q.true_pairs
    (0.5, 1.0, 1, 2, 1)
    """
    if len(predicted) != len(truth):
        raise MatchingInputError(
            f"predicted has {len(predicted)} datasets but truth has {len(truth)}"
        )
    for d, (pred, true) in enumerate(zip(predicted, truth, strict=True)):
        if np.shape(pred) != np.shape(true) or np.ndim(pred) != 1:
            raise MatchingInputError(
                f"dataset {d}: predicted and truth must be 1-D arrays of the same length"
            )
    if not predicted:
        entity = person = dataset = np.empty(0, dtype=np.int64)
    else:
        entity = np.concatenate([np.asarray(p, dtype=np.int64) for p in predicted])
        person = np.concatenate([np.asarray(t, dtype=np.int64) for t in truth])
        dataset = np.repeat(np.arange(len(predicted)), [len(p) for p in predicted])

    predicted_pairs = _cross_dataset_pairs(entity, dataset)
    true_pairs = _cross_dataset_pairs(person, dataset)
    # A pair is a true positive when it shares both entity and person: group by the two together.
    if entity.shape[0]:
        _, both = np.unique(np.stack([entity, person]), axis=1, return_inverse=True)
        true_positives = _cross_dataset_pairs(both.reshape(-1), dataset)
    else:
        true_positives = 0

    precision = true_positives / predicted_pairs if predicted_pairs else 1.0
    recall = true_positives / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Quality(
        precision=precision,
        recall=recall,
        f1=f1,
        true_positives=true_positives,
        predicted_pairs=predicted_pairs,
        true_pairs=true_pairs,
    )


def truth_quality(members: pd.DataFrame, truth: pd.DataFrame) -> Quality:
    """Pairwise quality of linked records against a truth table: the one truth-based evaluation.

    Parameters
    ----------
    members : pandas.DataFrame
        One row per record: ``entity_id, source, record_id`` (further columns are ignored).
    truth : pandas.DataFrame
        ``source, record_id, person_id`` for at least every record of ``members``.

    Raises
    ------
    InputDataError
        The truth table lacks a column, or has no person for a record.

    Examples
    --------
    >>> members = pd.DataFrame({"entity_id": ["e1", "e1"], "source": ["a", "b"],
    ...                         "record_id": ["1", "2"]})
    >>> truth = pd.DataFrame({"source": ["a", "b"], "record_id": ["1", "2"],
    ...                       "person_id": ["p", "p"]})
    >>> truth_quality(members, truth).precision
    1.0
    """
    missing = {"source", "record_id", "person_id"} - set(truth.columns)
    if missing:
        raise InputDataError(f"truth file lacks column(s) {', '.join(sorted(missing))}")
    truth = truth[["source", "record_id", "person_id"]].astype(str)
    if truth.duplicated(["source", "record_id"]).any():
        raise InputDataError("truth file names a record twice (the same source and record_id)")
    keyed = members[["entity_id", "source", "record_id"]].astype({"record_id": str})
    merged = keyed.merge(truth, on=["source", "record_id"], how="left")
    if merged["person_id"].isna().any():
        first = merged[merged["person_id"].isna()].iloc[0]
        raise InputDataError(
            f"truth has no person for record '{first.record_id}' of '{first.source}'"
        )
    entity = merged["entity_id"].astype("category").cat.codes.to_numpy(np.int64)
    person = merged["person_id"].astype("category").cat.codes.to_numpy(np.int64)
    groups = [(merged["source"] == s).to_numpy() for s in merged["source"].unique()]
    return pairwise_quality([entity[g] for g in groups], [person[g] for g in groups])
