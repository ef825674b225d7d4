"""Quality without ground truth: the beta mixture against the synthetic truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from oda_fed.encoding import default_field_encoding, encode_records
from oda_fed.matching import Candidates, MatchingInputError, dice_candidates
from oda_fed.matching.quality import (
    MixtureFit,
    best_scores,
    estimate_quality,
    fit_mixture,
    mixture_density,
    runner_up_scores,
)
from oda_fed.standardise import standardise_column
from oda_fed.synth import generate

FIELDS = {
    "first_name": "name",
    "last_name": "name",
    "date_of_birth": "date_of_birth",
    "sex": "sex",
    "postcode": "postcode",
}


def _encoded(data) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """CLKs and true person id of each record, per partner."""
    fields = [default_field_encoding(name, kind) for name, kind in FIELDS.items()]
    clks, persons = [], []
    for profile in data.profiles:
        frame = data.partners[profile.id]
        table = {}
        for name, kind in FIELDS.items():
            fmt = profile.date_format if kind == "date_of_birth" else None
            clean, _ = standardise_column(frame[profile.columns[name]], kind, fmt=fmt)
            table[name] = clean.tolist()
        clks.append(encode_records(table, fields=fields, secret=b"q" * 32, context="quality"))
        truth = data.truth[data.truth["source"] == profile.id].set_index("record_id")
        persons.append(truth.loc[frame[profile.record_id_column], "person_id"].to_numpy())
    return clks, persons


def _linked(clks: list[np.ndarray], persons: list[np.ndarray]) -> dict[str, object]:
    c = dice_candidates(clks[0], clks[1], threshold=0.5)
    # Candidates come sorted by score descending, so a record's first row is its best.
    _, first = np.unique(c.left, return_index=True)
    return {
        "scores": best_scores(c),
        "runner_up": runner_up_scores(c),
        "true_link": persons[0][c.left[first]] == persons[1][c.right[first]],
        "true_pairs": len(set(persons[0]) & set(persons[1])),
    }


@pytest.fixture(scope="module")
def linked() -> dict[str, object]:
    """Best and runner-up score per left record at medium errors (about 45% of records have no
    match), whether that best link is true, and the number of truly matching record pairs."""
    return _linked(*_encoded(generate(population=3000, partners=2, seed=7, errors="medium")))


@pytest.fixture(scope="module")
def all_matched() -> dict[str, object]:
    """As ``linked`` at high errors, keeping only the people present at both partners: every
    record has a match (FEBRL4's situation), so the best scores alone hold almost no
    non-matches."""
    clks, persons = _encoded(generate(population=3000, partners=2, seed=11, errors="high"))
    shared = np.intersect1d(persons[0], persons[1])
    keep = [np.isin(p, shared) for p in persons]
    return _linked(
        [c[k] for c, k in zip(clks, keep, strict=True)],
        [p[k] for p, k in zip(persons, keep, strict=True)],
    )


def true_quality(linked: dict, threshold: float) -> tuple[float, float, float]:
    chosen = linked["scores"] >= threshold
    hits = int(linked["true_link"][chosen].sum())
    precision = hits / max(int(chosen.sum()), 1)
    recall = hits / linked["true_pairs"]
    return precision, recall, 2 * precision * recall / (precision + recall)


def test_best_scores_match_a_plain_loop(rng: np.random.Generator) -> None:
    left, right = rng.integers(0, 20, 200), rng.integers(0, 15, 200)
    score = rng.random(200).round(2)
    c = Candidates(left=left, right=right, score=score)
    for side, index in (("left", left), ("right", right)):
        expected = [score[index == i].max() for i in sorted(set(index.tolist()))]
        assert best_scores(c, side=side).tolist() == expected
    with pytest.raises(MatchingInputError, match="side"):
        best_scores(c, side="middle")  # type: ignore[arg-type]


def test_runner_up_scores_match_a_plain_loop(rng: np.random.Generator) -> None:
    left, right = rng.integers(0, 20, 200), rng.integers(0, 15, 200)
    left[left == 3] = 4  # record 3 has no candidate
    left[left == 5] = 19  # record 19 gets more,
    left[np.flatnonzero(left == 19)[1:]] = 0  # but only one
    score = rng.random(200).round(3)
    c = Candidates(left=left, right=right, score=score)
    for side, index in (("left", left), ("right", right)):
        expected = []
        for i in sorted(set(index.tolist())):
            ranked = sorted(score[index == i].tolist(), reverse=True)
            expected.append(ranked[1] if len(ranked) > 1 else math.nan)
        got = runner_up_scores(c, side=side)
        assert got.shape == best_scores(c, side=side).shape
        np.testing.assert_array_equal(got, np.array(expected))
    assert math.isnan(runner_up_scores(c)[-1])
    assert runner_up_scores(Candidates(np.empty(0), np.empty(0), np.empty(0))).size == 0
    with pytest.raises(MatchingInputError, match="side"):
        runner_up_scores(c, side="middle")  # type: ignore[arg-type]


def test_em_converges_on_synthetic_linkage(linked: dict) -> None:
    fit = fit_mixture(linked["scores"])
    assert fit.ok and fit.converged and 0 < fit.iterations < 1000
    assert fit.n_scores == linked["scores"].size
    true_share = linked["true_link"].mean()
    assert fit.weight_match == pytest.approx(true_share, abs=0.03)
    # The match component sits above the non-match one.
    (am, bm), (an, bn) = fit.match_params, fit.nonmatch_params
    assert am / (am + bm) > an / (an + bn)


@pytest.mark.parametrize("with_runner_up", [False, True])
@pytest.mark.parametrize("threshold", [0.75, 0.8, 0.85, 0.9])
def test_estimates_are_within_a_few_points_of_the_truth(
    linked: dict, threshold: float, with_runner_up: bool
) -> None:
    runner_up = linked["runner_up"] if with_runner_up else None
    est = estimate_quality(linked["scores"], runner_up=runner_up)
    precision, recall, _ = est.at(threshold)
    true_precision, true_recall, _ = true_quality(linked, threshold)
    assert precision == pytest.approx(true_precision, abs=0.02)
    assert recall == pytest.approx(true_recall, abs=0.03)


@pytest.mark.parametrize("with_runner_up", [False, True])
def test_recommended_threshold_is_near_the_best_true_f1(linked: dict, with_runner_up: bool) -> None:
    runner_up = linked["runner_up"] if with_runner_up else None
    est = estimate_quality(linked["scores"], runner_up=runner_up)
    best = max(true_quality(linked, t)[2] for t in est.thresholds)
    assert true_quality(linked, est.recommended)[2] >= best - 0.01


def test_runner_ups_keep_the_fit_when_every_record_has_a_match(all_matched: dict) -> None:
    fit = fit_mixture(all_matched["scores"], runner_up=all_matched["runner_up"])
    assert fit.ok and fit.converged and fit.n_runner_up > 0.9 * all_matched["scores"].size
    assert fit.weight_match == pytest.approx(all_matched["true_link"].mean(), abs=0.02)
    est = estimate_quality(all_matched["scores"], runner_up=all_matched["runner_up"])
    for threshold in (0.75, 0.8, 0.85, 0.9):
        precision, recall, _ = est.at(threshold)
        true_precision, true_recall, _ = true_quality(all_matched, threshold)
        assert precision == pytest.approx(true_precision, abs=0.02)
        assert recall == pytest.approx(true_recall, abs=0.03)
    best = max(true_quality(all_matched, t)[2] for t in est.thresholds)
    assert true_quality(all_matched, est.recommended)[2] >= best - 0.02


def test_runner_up_must_align_with_the_scores(linked: dict) -> None:
    with pytest.raises(MatchingInputError, match="one entry per score"):
        fit_mixture(linked["scores"], runner_up=linked["runner_up"][:-1])


def test_fit_is_deterministic_for_a_seed(linked: dict) -> None:
    assert fit_mixture(linked["scores"], seed=3) == fit_mixture(linked["scores"], seed=3)
    kw = {"seed": 3, "runner_up": linked["runner_up"]}
    assert fit_mixture(linked["scores"], **kw) == fit_mixture(linked["scores"], **kw)


def test_recovers_a_known_mixture(rng: np.random.Generator) -> None:
    nonmatch = 0.5 + 0.5 * rng.beta(2.0, 8.0, 4000)
    match = 0.5 + 0.5 * rng.beta(12.0, 1.5, 1000)
    fit = fit_mixture(np.concatenate([nonmatch, match]))
    assert fit.weight_match == pytest.approx(0.2, abs=0.01)
    assert fit.match_params[0] / sum(fit.match_params) == pytest.approx(12 / 13.5, abs=0.01)
    assert fit.nonmatch_params[0] / sum(fit.nonmatch_params) == pytest.approx(0.2, abs=0.01)
    grid = np.linspace(0.5, 1.0, 2001)
    m, n = mixture_density(fit, grid)
    # Densities are per unit of score and weighted, so together they integrate to one.
    assert float(((m + n)[:-1] * np.diff(grid)).sum()) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize(
    ("scores", "reason"),
    [
        (np.array([]), "only 0 scores"),
        (np.full(50, 0.9), "all scores at or above the floor are equal"),
        (np.array([0.9, 0.95, 1.0]), "only 3 scores"),
        (np.full(50, 0.3), "only 0 scores"),
        (np.array([np.nan] * 20), "only 0 scores"),
    ],
)
def test_degenerate_inputs_give_a_clear_empty_result(scores: np.ndarray, reason: str) -> None:
    fit = fit_mixture(scores)
    assert not fit.ok and not fit.converged and reason in str(fit.reason)
    est = estimate_quality(scores)
    assert est.reason == fit.reason and math.isnan(est.recommended)
    assert est.thresholds.size > 0 and np.isnan(est.precision).all()
    assert np.isnan(mixture_density(fit, np.array([0.9]))[0]).all()


def test_custom_grid_and_empty_top(rng: np.random.Generator) -> None:
    scores = np.concatenate([0.5 + 0.1 * rng.random(100), 0.9 + 0.05 * rng.random(50)])
    est = estimate_quality(scores, grid=np.array([0.99, 0.6, 0.8]))
    assert est.thresholds.tolist() == [0.6, 0.8, 0.99]
    # Nothing scores 0.99 or more: nothing is linked, so no link is wrong and every match missed.
    assert est.precision[-1] == 1.0 and est.recall[-1] == pytest.approx(0.0, abs=1e-9)


def test_bad_input_is_a_typed_error() -> None:
    with pytest.raises(MatchingInputError, match="1-D"):
        fit_mixture(np.zeros((2, 2)))
    with pytest.raises(MatchingInputError, match="floor"):
        fit_mixture(np.zeros(3), floor=1.0)
    with pytest.raises(MatchingInputError, match="numbers"):
        estimate_quality(np.array(["a"]))


def test_a_given_fit_is_used_as_is(linked: dict) -> None:
    fit = MixtureFit(0.5, (20.0, 1.0), (1.0, 20.0), True, 1, floor=0.5, n_scores=10)
    est = estimate_quality(linked["scores"], fit=fit)
    assert est.fit is fit
