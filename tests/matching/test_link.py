"""The linkage pipeline: keyed tokens and their conflict rule, blocking, the quality pass."""

from __future__ import annotations

import numpy as np
import pytest

from oda_fed.matching import Candidates, MatchingInputError, dice_candidates, pairwise_quality
from oda_fed.matching.blocking import Blocking
from oda_fed.matching.link import (
    TokenConflicts,
    apply_tokens,
    exact_pairs,
    link_clks,
    link_with_quality,
    partners_per_entity,
    quality_scores,
    score_pairs,
    with_exact,
)
from oda_fed.matching.quality import best_scores, runner_up_scores
from oda_fed.matching.settings import LinkSettings


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


def test_a_token_match_links_records_whose_clks_disagree(executor) -> None:
    a, b = clks([0b1111, 0b110000]), clks([0b1111, 0b1])
    plain = link_clks([a, b], threshold=0.8, executor=executor)
    assert plain.labels[0][1] != plain.labels[1][1]
    tokens = [{"nhs": [None, "x"]}, {"nhs": [None, "x"]}]
    linked = link_clks([a, b], threshold=0.8, tokens=tokens, executor=executor)
    assert linked.labels[0][1] == linked.labels[1][1]
    assert linked.scores[0][1] == 1.0
    assert partners_per_entity(linked).tolist().count(2) == 2


def test_auto_threshold_is_estimated_and_links_well(executor) -> None:
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

    outcome = link_with_quality(clks, settings=LinkSettings(), executor=executor)
    assert 0.6 < outcome.threshold < 0.95
    quality = pairwise_quality(outcome.clustering.labels, true_labels)
    assert quality.f1 > 0.97
    est_p, est_r, _ = outcome.estimate.at(outcome.threshold)
    assert abs(est_p - quality.precision) < 0.03 and abs(est_r - quality.recall) < 0.05

    fixed = link_with_quality(clks, settings=LinkSettings(threshold=0.8))
    assert fixed.threshold == 0.8


def test_the_token_rule_trusts_identifiers_both_ways() -> None:
    # Row 0: CLKs identical, tokens differ. Row 1: tokens agree, CLKs unrelated.
    a, b = clks([0b1111, 0b110000]), clks([0b1111, 0b1])
    tokens = [{"nhs": ["p", "x"]}, {"nhs": ["q", "x"]}]
    found = dice_candidates(a, b, threshold=0.8)
    kept, conflicts = apply_tokens(found, a, b, tokens[0], tokens[1], threshold=0.8, rule="token")
    assert list(zip(kept.left.tolist(), kept.right.tolist(), strict=True)) == [(1, 1)]
    assert conflicts == TokenConflicts(
        token_agrees_clk_below=1, linked_by_token=1, token_differs_clk_above=1, vetoed_by_token=1
    )
    linked = link_clks([a, b], threshold=0.8, tokens=tokens)
    assert linked.labels[0][0] != linked.labels[1][0]
    assert linked.labels[0][1] == linked.labels[1][1]


def test_the_clk_rule_trusts_similarity_both_ways() -> None:
    # Row 0 as above; row 1 agrees in token with CLK Dice 0.4 (under the 0.5 floor); row 2
    # agrees in token with Dice 0.75 (above the floor, below the threshold). Rows use disjoint
    # bits, so no cross pair is a candidate.
    a = clks([0b1111, 0b11 << 8, 0b111 << 16])
    b = clks([0b1111, 0b1110 << 8, 0b11111 << 16])
    tokens = [{"nhs": ["p", "x", "y"]}, {"nhs": ["q", "x", "y"]}]
    found = dice_candidates(a, b, threshold=0.8)
    kept, conflicts = apply_tokens(found, a, b, tokens[0], tokens[1], threshold=0.8, rule="clk")
    pairs = set(zip(kept.left.tolist(), kept.right.tolist(), strict=True))
    assert (0, 0) in pairs and (2, 2) in pairs and (1, 1) not in pairs
    assert conflicts.token_differs_clk_above == 1 and conflicts.vetoed_by_token == 0
    assert conflicts.token_agrees_clk_below == 2 and conflicts.linked_by_token == 1
    with pytest.raises(MatchingInputError):
        apply_tokens(found, a, b, tokens[0], tokens[1], threshold=0.8, rule="nhs")  # type: ignore[arg-type]


def test_a_pair_agreeing_in_one_token_is_not_vetoed_by_another() -> None:
    a, b = clks([0b1111]), clks([0b1111])
    found = dice_candidates(a, b, threshold=0.8)
    kept, conflicts = apply_tokens(
        found, a, b, {"nhs": ["p"], "uprn": ["u"]}, {"nhs": ["q"], "uprn": ["u"]}, threshold=0.8
    )
    assert len(kept) == 1 and conflicts.vetoed_by_token == 0


@pytest.fixture(scope="module")
def realistic() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """CLKs of three synthetic partners and each record's true person code."""
    from oda_fed.encoding import default_field_encoding, encode_records
    from oda_fed.standardise import standardise_column
    from oda_fed.synth import generate

    synthetic = generate(population=1500, partners=3, seed=8, errors="medium")
    fields = [
        default_field_encoding(name, kind)
        for name, kind in (
            ("first_name", "name"),
            ("last_name", "name"),
            ("date_of_birth", "date_of_birth"),
            ("sex", "sex"),
            ("postcode", "postcode"),
        )
    ]
    out, people = [], []
    for profile in synthetic.profiles:
        frame = synthetic.partners[profile.id]
        table = {}
        for f in fields:
            fmt = profile.date_format if f.type == "date_of_birth" else None
            table[f.name] = standardise_column(frame[profile.columns[f.name]], f.type, fmt=fmt)[
                0
            ].tolist()
        out.append(encode_records(table, fields=fields, secret=b"s" * 32, context="t"))
        truth = synthetic.truth[synthetic.truth.source == profile.id].set_index("record_id")
        people.append(truth.loc[frame[profile.record_id_column], "person_id"].to_numpy())
    codes = {p: i for i, p in enumerate(np.unique(np.concatenate(people)))}
    return out, [np.array([codes[p] for p in t]) for t in people]


def test_lsh_blocking_in_the_pipeline_keeps_nearly_every_link(realistic, executor) -> None:
    sources, truth = realistic
    full = link_with_quality(
        sources,
        settings=LinkSettings(threshold=0.8, blocking=Blocking(method="none")),
        executor=executor,
    )
    blocked = link_with_quality(
        sources,
        settings=LinkSettings(threshold=0.8, blocking=Blocking(method="lsh")),
        executor=executor,
    )
    assert all(b.stats is None for b in full.blocking)
    stats = [b.stats for b in blocked.blocking]
    assert len(stats) == 3 and all(s is not None and s.bands > 1 for s in stats)
    for b, f in zip(blocked.blocking, full.blocking, strict=True):
        # A subset of the all-pairs candidates, missing at most a few near the threshold.
        assert f.candidates * 0.98 <= b.candidates <= f.candidates
    q_full = pairwise_quality(full.clustering.labels, truth)
    q_blocked = pairwise_quality(blocked.clustering.labels, truth)
    assert q_full.f1 > 0.95 and q_blocked.f1 > q_full.f1 - 0.01
    lines = blocked.evidence(["a", "b", "c"])
    assert "LSH blocking" in lines["a × b"] and "reduction ratio" in lines["b × c"]
    assert "all" in full.evidence(["a", "b", "c"])["a × c"]


def test_the_quality_pass_samples_the_smaller_source(realistic, executor) -> None:
    sources, _ = realistic
    small, other = sorted(sources[:2], key=len)
    best, runner_up, n = quality_scores(small, other, sample=len(small))
    found = dice_candidates(small, other, threshold=0.5)
    # Every record: the same figures as from the full candidate list.
    np.testing.assert_array_equal(best, best_scores(found))
    np.testing.assert_array_equal(runner_up, runner_up_scores(found))
    assert n == len(small)
    part, _, n_part = quality_scores(small, other, sample=200, seed=3)
    again, _, _ = quality_scores(small, other, sample=200, seed=3)
    assert n_part == 200 and len(part) <= 200
    np.testing.assert_array_equal(part, again)
    assert set(part.tolist()) <= set(best.tolist())
    outcome = link_with_quality(
        sources, settings=LinkSettings(threshold="auto", quality_sample=300), executor=executor
    )
    assert outcome.sampled == 3 * 300 and outcome.sample_from > outcome.sampled
    assert 0.6 < outcome.threshold < 0.95
    assert "seeded sample" in outcome.evidence(["a", "b", "c"])["quality estimate"]


def test_keyed_tokens_are_combined_with_lsh_blocking(realistic, executor) -> None:
    """A pair sharing a keyed token is a candidate even when no LSH band brings it together."""
    sources, truth = realistic
    a, b = sources[0], sources[1]
    # One band of 64 bits: only near-identical CLKs share it.
    strict = Blocking(method="lsh", bands=1, bits_per_band=64)
    same = [(i, j) for i in range(len(a)) for j in np.flatnonzero(truth[1] == truth[0][i])]
    tokens = [
        {"nhs": [f"t{truth[0][i]}" for i in range(len(a))]},
        {"nhs": [f"t{truth[1][j]}" for j in range(len(b))]},
    ]
    plain = score_pairs([a, b], threshold=0.8, blocking=strict, executor=executor)[0].candidates
    keyed = score_pairs([a, b], threshold=0.8, blocking=strict, tokens=tokens, executor=executor)[
        0
    ].candidates
    found = set(zip(keyed.left.tolist(), keyed.right.tolist(), strict=True))
    assert len(plain) < 0.9 * len(same) and set(same) <= found


def test_a_threshold_that_passes_too_many_pairs_is_refused_clearly(realistic, monkeypatch) -> None:
    from oda_fed.matching import candidates

    sources, _ = realistic
    monkeypatch.setattr(candidates, "MAX_CANDIDATES", 1_000)
    for blocking in (Blocking(method="none"), Blocking(method="lsh")):
        with pytest.raises(MatchingInputError, match="Raise the threshold"):
            link_with_quality(sources, settings=LinkSettings(threshold=0.3, blocking=blocking))
    with pytest.raises(MatchingInputError, match="bands to find pairs at Dice 0.30"):
        link_with_quality(
            sources,
            settings=LinkSettings(threshold=0.3, blocking=Blocking("lsh", min_threshold=0.3)),
        )
    # At a sensible threshold the same limit is not reached.
    assert (
        link_with_quality(sources[:2], settings=LinkSettings(threshold=0.9)).clustering.n_entities
        > 0
    )
