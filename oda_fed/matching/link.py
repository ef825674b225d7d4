"""Link several sources' CLKs into entities: score every pair of sources, then resolve.

This is the one linkage pipeline; embedded mode (`oda-fed link`) and the coordinator both call it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from oda_fed.matching import Candidates, Clustering, PairCandidates, dice_candidates, resolve
from oda_fed.matching.candidates import MatchingInputError
from oda_fed.matching.quality import (
    QualityEstimate,
    best_scores,
    estimate_quality,
    runner_up_scores,
)

Progress = Callable[[str], None]
#: Per source: field -> keyed token per record (any hashable; None where missing).
Tokens = Mapping[str, Sequence[object]]

#: The score a pair gets when a keyed token of an exact identifier agrees.
EXACT_SCORE = 1.0
#: Candidates are scored down to here so the quality estimate sees both matches and non-matches.
QUALITY_FLOOR = 0.5


def score_pairs(
    clks: Sequence[np.ndarray],
    *,
    threshold: float,
    tokens: Sequence[Tokens] | None = None,
    progress: Progress | None = None,
) -> list[PairCandidates]:
    """Candidates for every pair of sources at ``threshold`` (token matches added at 1.0)."""
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
    return pairs


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
    pairs = score_pairs(clks, threshold=threshold, tokens=tokens, progress=progress)
    if progress is not None:
        progress("resolving entities")
    return resolve([len(c) for c in clks], pairs, one_per_source=one_per_source)


@dataclass(frozen=True)
class LinkOutcome:
    """Entities, the threshold that made them, and the estimate of linkage quality behind it."""

    clustering: Clustering
    threshold: float
    best_scores: np.ndarray
    estimate: QualityEstimate


def link_with_quality(
    clks: Sequence[np.ndarray],
    *,
    threshold: float | str,
    one_per_source: bool = True,
    tokens: Sequence[Tokens] | None = None,
    progress: Progress | None = None,
) -> LinkOutcome:
    """Link as :func:`link_clks`, and estimate precision and recall without ground truth.

    Candidates are scored down to the estimate's floor (0.5), the best score of each record on the
    smaller side of every pair of sources is fitted with a two-component mixture, and the non-match
    component also learns from each record's runner-up score (so it holds when nearly every record
    has a match), and ``threshold="auto"`` takes the threshold that maximises the estimated F1.
    Pairs below the chosen threshold are then dropped before resolution.
    """
    floor = QUALITY_FLOOR if threshold == "auto" else min(QUALITY_FLOOR, float(threshold))
    pairs = score_pairs(clks, threshold=floor, tokens=tokens, progress=progress)
    # The smaller side of each pair: one best (and runner-up) score per record there.
    sides = ["left" if len(clks[p.source_a]) <= len(clks[p.source_b]) else "right" for p in pairs]
    best = np.concatenate(
        [np.empty(0)]
        + [best_scores(p.candidates, side=s) for p, s in zip(pairs, sides, strict=True)]
    )
    runner_up = np.concatenate(
        [np.empty(0)]
        + [runner_up_scores(p.candidates, side=s) for p, s in zip(pairs, sides, strict=True)]
    )
    estimate = estimate_quality(best, runner_up=runner_up)
    if threshold == "auto":
        if not np.isfinite(estimate.recommended):
            raise MatchingInputError(
                f'threshold = "auto" could not be estimated ({estimate.reason}); set a number'
            )
        chosen = float(estimate.recommended)
    else:
        chosen = float(threshold)
    kept = [
        PairCandidates(
            source_a=p.source_a, source_b=p.source_b, candidates=_at_least(p.candidates, chosen)
        )
        for p in pairs
    ]
    if progress is not None:
        progress("resolving entities")
    clustering = resolve([len(c) for c in clks], kept, one_per_source=one_per_source)
    return LinkOutcome(clustering=clustering, threshold=chosen, best_scores=best, estimate=estimate)


def _at_least(c: Candidates, threshold: float) -> Candidates:
    keep = c.score >= threshold  # the order (score desc, left, right) survives a mask
    return Candidates(left=c.left[keep], right=c.right[keep], score=c.score[keep])


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
