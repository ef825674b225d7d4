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


def test_auto_threshold_is_estimated_and_links_well() -> None:
    from oda_fed.encoding import default_field_encoding, encode_records
    from oda_fed.matching import pairwise_quality
    from oda_fed.matching.link import link_with_quality
    from oda_fed.standardise import standardise_column
    from oda_fed.synth import generate

    synthetic = generate(population=2000, partners=2, seed=4, errors="medium")
    fields = [
        default_field_encoding("first_name", "name"),
        default_field_encoding("last_name", "name"),
        default_field_encoding("date_of_birth", "date_of_birth"),
        default_field_encoding("sex", "sex"),
        default_field_encoding("postcode", "postcode"),
    ]
    clks, truths = [], []
    for profile in synthetic.profiles:
        frame = synthetic.partners[profile.id]
        table = {}
        for f in fields:
            fmt = profile.date_format if f.type == "date_of_birth" else None
            values, _ = standardise_column(frame[profile.columns[f.name]], f.type, fmt=fmt)
            table[f.name] = [None if v is None else v for v in values.tolist()]
        clks.append(encode_records(table, fields=fields, secret=b"s" * 32, context="t"))
        truth = synthetic.truth[synthetic.truth.source == profile.id].set_index("record_id")
        truths.append(truth.loc[frame[profile.record_id_column], "person_id"].to_numpy())
    codes = {p: i for i, p in enumerate(np.unique(np.concatenate(truths)))}
    true_labels = [np.array([codes[p] for p in t]) for t in truths]

    outcome = link_with_quality(clks, threshold="auto")
    assert 0.6 < outcome.threshold < 0.95
    quality = pairwise_quality(outcome.clustering.labels, true_labels)
    assert quality.f1 > 0.97
    est_p, est_r, _ = outcome.estimate.at(outcome.threshold)
    assert abs(est_p - quality.precision) < 0.03 and abs(est_r - quality.recall) < 0.05

    fixed = link_with_quality(clks, threshold=0.8)
    assert fixed.threshold == 0.8
