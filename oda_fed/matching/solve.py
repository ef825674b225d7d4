"""Resolve scored candidate pairs from many datasets into entities (greedy union-find).

Records of all datasets get one global node id (dataset offset + row). Edges are taken in one global
order and merged with a union-find; with ``one_per_source`` a merge is refused when both groups
already hold a record of the same dataset, which for two datasets is greedy 1-to-1 matching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from oda_fed.matching.candidates import Candidates, MatchingInputError


@dataclass(frozen=True)
class PairCandidates:
    """Candidate pairs between dataset ``source_a`` (``left`` rows) and ``source_b`` (``right``)."""

    source_a: int
    source_b: int
    candidates: Candidates


@dataclass(frozen=True)
class Clustering:
    """Entities found by :func:`resolve`.

    Attributes
    ----------
    labels : list of numpy.ndarray
        Per dataset, the ``int64`` entity index of every record, in ``0..n_entities - 1``. Entities
        are numbered by first appearance, scanning datasets in order and rows in order; a record
        that matched nothing is its own entity.
    scores : list of numpy.ndarray
        Per dataset, ``float64``: the score of the first accepted edge that touched the record,
        i.e. the edge that joined it to its entity; ``NaN`` for singletons.
    n_entities : int
        Number of entities, singletons included.
    """

    labels: list[np.ndarray]
    scores: list[np.ndarray]
    n_entities: int


@njit(cache=True)
def _find(parent, x):
    # Path halving: each visited node skips to its grandparent, keeping trees shallow.
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True)
def _greedy_merge(node_a, node_b, score, dataset_of, n_datasets, one_per_source):
    """Merge edges in the given order; return (labels, joined score, n_entities) per node."""
    n_nodes = dataset_of.shape[0]
    parent = np.arange(n_nodes)
    size = np.ones(n_nodes, dtype=np.int64)
    # Per group root, a bitset of the datasets it holds (only needed for one_per_source).
    n_words = (n_datasets + 63) // 64 if one_per_source else 0
    held = np.zeros((n_nodes, n_words), dtype=np.uint64)
    if one_per_source:
        for v in range(n_nodes):
            d = dataset_of[v]
            held[v, d // 64] = np.uint64(1) << np.uint64(d % 64)
    joined = np.full(n_nodes, np.nan)
    for e in range(node_a.shape[0]):
        u = node_a[e]
        v = node_b[e]
        ru = _find(parent, u)
        rv = _find(parent, v)
        if ru == rv:
            continue
        clash = False
        for w in range(n_words):
            if held[ru, w] & held[rv, w]:
                clash = True
                break
        if clash:
            continue
        if size[ru] < size[rv]:
            ru, rv = rv, ru
        parent[rv] = ru
        size[ru] += size[rv]
        for w in range(n_words):
            held[ru, w] |= held[rv, w]
        if np.isnan(joined[u]):
            joined[u] = score[e]
        if np.isnan(joined[v]):
            joined[v] = score[e]
    # Number entities by first appearance in node order, so labels do not depend on which record
    # union-by-size happened to make the root.
    entity_of_root = np.full(n_nodes, -1, dtype=np.int64)
    labels = np.empty(n_nodes, dtype=np.int64)
    n_entities = 0
    for v in range(n_nodes):
        r = _find(parent, v)
        if entity_of_root[r] < 0:
            entity_of_root[r] = n_entities
            n_entities += 1
        labels[v] = entity_of_root[r]
    return labels, joined, n_entities


def _check_pair(pair: PairCandidates, sizes: Sequence[int], *, index: int) -> None:
    n_datasets = len(sizes)
    for side in ("source_a", "source_b"):
        source = getattr(pair, side)
        if isinstance(source, bool) or not isinstance(source, int | np.integer):
            raise MatchingInputError(f"pairs[{index}].{side} must be an int dataset index")
        if not 0 <= source < n_datasets:
            raise MatchingInputError(
                f"pairs[{index}].{side} = {source} is out of range for {n_datasets} datasets"
            )
    found = pair.candidates
    n = found.score.shape[0]
    if found.left.shape != (n,) or found.right.shape != (n,) or found.score.ndim != 1:
        raise MatchingInputError(f"pairs[{index}]: left, right and score must be 1-D of one length")
    if n and np.isnan(found.score).any():
        raise MatchingInputError(f"pairs[{index}]: scores must not be NaN")
    for side, rows, source in (
        ("left", found.left, pair.source_a),
        ("right", found.right, pair.source_b),
    ):
        if n and (rows.min() < 0 or rows.max() >= sizes[source]):
            raise MatchingInputError(
                f"pairs[{index}].{side}: row index out of range for dataset {source} "
                f"of {sizes[source]} records"
            )


def resolve(
    sizes: Sequence[int], pairs: Sequence[PairCandidates], *, one_per_source: bool = True
) -> Clustering:
    """Greedily merge candidate pairs from any number of datasets into entities.

    All edges are taken in one global order: score descending, then ``source_a``, ``left``,
    ``source_b``, ``right`` (each edge first oriented so that ``(source_a, left)`` is the smaller
    end, so the order does not depend on which way round a pair was given). Each edge merges the
    groups of its two records unless they are already one group or, with ``one_per_source``, the
    merge would put two records of one dataset in one entity. For two datasets this is greedy
    1-to-1 matching by score. The result depends only on the set of edges, not their input order.

    Parameters
    ----------
    sizes : sequence of int
        Number of records in each dataset.
    pairs : sequence of PairCandidates
        Scored edges; any number per pair of datasets.
    one_per_source : bool
        Refuse merges that would put two records of one dataset in one entity.

    Returns
    -------
    Clustering

    Raises
    ------
    MatchingInputError
        On a negative size, a dataset index or row index out of range, or a NaN score.

    Examples
    --------
    >>> found = Candidates(
    ...     left=np.array([0, 1]), right=np.array([0, 0]), score=np.array([0.9, 0.95])
    ... )
    >>> result = resolve([2, 1], [PairCandidates(source_a=0, source_b=1, candidates=found)])
    >>> [labels.tolist() for labels in result.labels], result.n_entities
    ([[0, 1], [1]], 2)
    """
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes):
        raise MatchingInputError("dataset sizes must be non-negative")
    for index, pair in enumerate(pairs):
        _check_pair(pair, sizes, index=index)

    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(sizes)
    dataset_of = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)

    def column(values: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(values).astype(dtype, copy=False) if values else np.empty(0, dtype)

    src_a = column([np.full(len(p.candidates), p.source_a) for p in pairs], np.int64)
    src_b = column([np.full(len(p.candidates), p.source_b) for p in pairs], np.int64)
    left = column([p.candidates.left for p in pairs], np.int64)
    right = column([p.candidates.right for p in pairs], np.int64)
    score = column([p.candidates.score for p in pairs], np.float64)

    # Orient every edge from its smaller (dataset, row) end, then sort into the global order.
    swap = (src_a > src_b) | ((src_a == src_b) & (left > right))
    src_a, src_b = np.where(swap, src_b, src_a), np.where(swap, src_a, src_b)
    left, right = np.where(swap, right, left), np.where(swap, left, right)
    order = np.lexsort((right, src_b, left, src_a, -score))
    node_a = offsets[src_a[order]] + left[order]
    node_b = offsets[src_b[order]] + right[order]

    labels, joined, n_entities = _greedy_merge(
        node_a, node_b, score[order], dataset_of, len(sizes), one_per_source
    )
    bounds = list(zip(offsets[:-1], offsets[1:], strict=True))
    return Clustering(
        labels=[labels[lo:hi] for lo, hi in bounds],
        scores=[joined[lo:hi] for lo, hi in bounds],
        n_entities=int(n_entities),
    )
