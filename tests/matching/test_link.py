"""The linkage pipeline: keyed tokens of exact identifiers become score-1.0 candidates."""

from __future__ import annotations

import numpy as np

from oda_fed.matching import Candidates
from oda_fed.matching.link import exact_pairs, link_clks, partners_per_entity, with_exact


def clks(rows: list[int]) -> np.ndarray:
    out = np.zeros((len(rows), 16), dtype=np.uint64)
    out[:, 0] = np.asarray(rows, dtype=np.uint64)
    return out


def test_exact_pairs_join_on_any_shared_field() -> None:
    a = {"nhs": ["t1", None, "t3"], "uprn": ["u1", "u2", None]}
    b = {"nhs": [None, "t3", "t1"], "uprn": ["u2", None, None]}
    left, right = exact_pairs(a, b)
    assert sorted(zip(left.tolist(), right.tolist(), strict=True)) == [(0, 2), (1, 0), (2, 1)]
    assert exact_pairs(a, {"other": ["t1"]})[0].size == 0


def test_with_exact_keeps_the_best_score_once_and_the_documented_order() -> None:
    c = Candidates(left=np.array([0, 1]), right=np.array([0, 1]), score=np.array([0.9, 0.85]))
    merged = with_exact(c, np.array([1, 2]), np.array([1, 0]), n_right=3)
    assert merged.left.tolist() == [1, 2, 0]
    assert merged.right.tolist() == [1, 0, 0]
    assert merged.score.tolist() == [1.0, 1.0, 0.9]


def test_a_token_match_links_records_whose_clks_disagree() -> None:
    a, b = clks([0b1111, 0b110000]), clks([0b1111, 0b1])
    plain = link_clks([a, b], threshold=0.8)
    assert plain.labels[0][1] != plain.labels[1][1]
    tokens = [{"nhs": [None, "x"]}, {"nhs": [None, "x"]}]
    linked = link_clks([a, b], threshold=0.8, tokens=tokens)
    assert linked.labels[0][1] == linked.labels[1][1]
    assert linked.scores[0][1] == 1.0
    assert partners_per_entity(linked).tolist().count(2) == 2
