"""Link several sources' CLKs into entities: score every pair of sources, then resolve.

This is the one linkage pipeline; embedded mode (`oda-fed link`) and the coordinator both call it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from oda_fed.matching import Clustering, PairCandidates, dice_candidates, resolve

Progress = Callable[[str], None]


def link_clks(
    clks: Sequence[np.ndarray],
    *,
    threshold: float,
    one_per_source: bool = True,
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
            pairs.append(
                PairCandidates(
                    source_a=i,
                    source_b=j,
                    candidates=dice_candidates(clks[i], clks[j], threshold=threshold),
                )
            )
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
