"""Link several sources' CLKs into entities: score every pair of sources, then resolve.

This is the one linkage pipeline; embedded mode (`oda-fed link`) and the coordinator both call it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from oda_fed.matching import Candidates, Clustering, PairCandidates, dice_candidates, resolve

Progress = Callable[[str], None]
#: Per source: field -> keyed token per record (any hashable; None where missing).
Tokens = Mapping[str, Sequence[object]]

#: The score a pair gets when a keyed token of an exact identifier agrees.
EXACT_SCORE = 1.0


def link_clks(
    clks: Sequence[np.ndarray],
    *,
    threshold: float,
    one_per_source: bool = True,
    tokens: Sequence[Tokens] | None = None,
    progress: Progress | None = None,
) -> Clustering:
    """Resolve records from ``len(clks)`` sources into entities.

    Parameters
    ----------
    clks
        One bit-packed ``uint64`` array per source, all with the same number of words.
    threshold
        Dice similarity a pair must reach to be a candidate.
    one_per_source
        Allow at most one record per source in an entity.
    tokens
        Optional keyed tokens of exact identifiers, one mapping per source. Two records whose
        tokens agree in any shared field become a candidate pair with score 1.0, whatever their
        CLKs say, so they are resolved before any similarity-only pair.
    progress
        Called with a short description before each pair of sources is scored.

    Examples
    --------
    >>> a = np.array([[0b1111]], dtype=np.uint64); b = a.copy()
    >>> link_clks([a, b], threshold=0.9).n_entities
    1
    """
    if len(clks) < 2:
        raise ValueError("linkage needs at least two sources")
    pairs = []
    for i in range(len(clks)):
        for j in range(i + 1, len(clks)):
            if progress is not None:
                progress(f"scoring source {i + 1} against source {j + 1}")
            candidates = dice_candidates(clks[i], clks[j], threshold=threshold)
            if tokens is not None:
                left, right = exact_pairs(tokens[i], tokens[j])
                candidates = with_exact(candidates, left, right, n_right=len(clks[j]))
            pairs.append(PairCandidates(source_a=i, source_b=j, candidates=candidates))
    if progress is not None:
        progress("resolving entities")
    return resolve([len(c) for c in clks], pairs, one_per_source=one_per_source)


def partners_per_entity(clustering: Clustering) -> np.ndarray:
    """For each entity index, how many sources know it."""
    counts = np.zeros(clustering.n_entities, dtype=np.int64)
    for labels in clustering.labels:
        # one_per_source means each source contributes at most once; unique() keeps it right otherwise
        counts[np.unique(labels)] += 1
    return counts


def exact_pairs(a: Tokens, b: Tokens) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs (left in ``a``, right in ``b``) whose tokens agree in at least one shared field."""
    found = []
    for field in sorted(set(a) & set(b)):
        left = pd.DataFrame({"t": list(a[field]), "left": np.arange(len(a[field]))}).dropna()
        right = pd.DataFrame({"t": list(b[field]), "right": np.arange(len(b[field]))}).dropna()
        found.append(left.merge(right, on="t")[["left", "right"]])
    if not found:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    both = pd.concat(found).drop_duplicates()
    return both["left"].to_numpy(np.int64), both["right"].to_numpy(np.int64)


def with_exact(
    candidates: Candidates, left: np.ndarray, right: np.ndarray, *, n_right: int
) -> Candidates:
    """Add exact pairs at score 1.0, keep one entry per pair (its best score), re-sort.

    The order stays the documented one: score descending, then left, then right.
    """
    if not len(left):
        return candidates
    lft = np.concatenate([left, candidates.left])
    rgt = np.concatenate([right, candidates.right])
    score = np.concatenate([np.full(len(left), EXACT_SCORE), candidates.score])
    key = lft * max(n_right, 1) + rgt
    order = np.lexsort((-score, key))  # by pair, best score first
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    keep = order[first]
    lft, rgt, score = lft[keep], rgt[keep], score[keep]
    final = np.lexsort((rgt, lft, -score))
    return Candidates(left=lft[final], right=rgt[final], score=score[final])
