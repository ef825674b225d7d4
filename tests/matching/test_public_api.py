"""The matching package's public surface changes only on purpose."""

from __future__ import annotations

import oda_fed.matching as matching


def test_all_snapshot() -> None:
    assert sorted(matching.__all__) == [
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
    for name in matching.__all__:
        assert getattr(matching, name) is not None
