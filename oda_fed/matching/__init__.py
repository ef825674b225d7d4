"""Matching engine: Dice candidate pairs over bit-packed CLKs, entity resolution, quality metrics.

The similarity kernels live in :mod:`oda_fed.matching.kernels` (Numba) with plain-Python twins in
:mod:`oda_fed.matching.reference`; the names below are the public surface.
"""

from oda_fed.matching.candidates import (
    Candidates,
    MatchingInputError,
    dice_candidates,
    dice_score,
    threshold_ratio,
)
from oda_fed.matching.metrics import Quality, pairwise_quality
from oda_fed.matching.solve import Clustering, PairCandidates, resolve

__all__ = [
    "Candidates",
    "Clustering",
    "MatchingInputError",
    "PairCandidates",
    "Quality",
    "dice_candidates",
    "dice_score",
    "pairwise_quality",
    "resolve",
    "threshold_ratio",
]
