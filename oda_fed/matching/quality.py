"""Linkage quality without ground truth: a two-component beta mixture over Dice scores.

No partner can label matches (nobody may look at the raw pairs), yet a coordinator must pick a
threshold and say how good the linkage is. The scores themselves carry that information: true
matches pile up near 1, non-matches in a tail that falls away from the candidate floor. We fit
that as a two-component mixture and read precision and recall off it, following the mixture
approach to record-linkage error rates of Belin & Rubin (1995, *JASA* 90:694-707), as applied to
Bloom-filter PPRL similarity scores (Christen, Ranbaduge & Schnell, *Linking Sensitive Data*,
Springer 2020, ch. 10; Vatsalan et al. 2013, *Information Systems* 38:946-969, on evaluating PPRL
without truth).

Approach
--------
* The model is fitted to the **best score per record** of one dataset (:func:`best_scores`), not
  to every candidate pair. Over all pairs the non-matches outnumber the matches hundreds to one
  and no beta shape fits their tail well enough to estimate precision; per record the two groups
  are of similar size (records with and without a partner in the other dataset) and each is
  unimodal. For two parties linked 1-to-1 these best links are close to what the solver keeps,
  so their precision and recall are those of the linkage.
* Scores below ``floor`` are dropped; the rest are mapped to ``u = (s - floor) / (1 - floor)`` in
  ``(0, 1)`` (clipped half a thousandth from the ends, since exact matches score exactly 1.0) and
  modelled as ``w * Beta(a_m, b_m) + (1 - w) * Beta(a_n, b_n)``; the component with the higher
  mean is the match component.
* The non-match component is the distribution of a record's *best non-match* score. Records
  without a match show it as their best score, but when (nearly) every record has a match
  (FEBRL4) there are too few of those and a free two-component fit splits the matches instead
  (recommending 0.93 on FEBRL4, true F1 0.71). So, under 1-to-1 linkage, the **runner-up**
  score of a record whose best is its match is also a draw of it (:func:`runner_up_scores`):
  the non-match M-step pools best scores weighted ``1 - r_i`` with runner-ups weighted ``r_i``
  (a record whose best is a non-match has a runner-up that is only a second-best non-match, so
  it gets no weight). The weight is free in ``[0, 1]`` and reaches ~1 when every record has a
  match (FEBRL4 then recommends 0.56, true F1 0.9997); without runner-ups this is the plain fit.
* EM with a weighted method-of-moments M-step (Schroeder & Rahmann 2017, *Algorithms Mol. Biol.*
  12:21): closed form, no optimiser, stable when one component is hundreds of times smaller.
* Precision and recall at a threshold use the fitted *responsibilities* of the observed scores
  rather than the beta tails: ``precision(t) = sum(r_i, s_i >= t) / #{s_i >= t}`` and
  ``recall(t) = sum(r_i, s_i >= t) / sum(r_i)``. The parametric tails only decide how each
  observed score is split, so a poorly shaped tail moves the estimate by at most the few scores
  in the overlap, not by the whole tail's mass.

Assumptions (state them next to any figure this produces)
-------------------------------------------------------------
* Each record's best score is one independent draw from the mixture; a record whose true match
  is beaten by a non-match counts as a false link (rare at usable error rates).
* A record's best non-match score has the same distribution whether or not it has a match
  (what lets runner-ups stand in for unmatched records' best scores).
* Matches that score below ``floor`` are invisible: recall is relative to matches scoring at least
  ``floor``. Choose a floor under which few true matches fall (0.5 for the default encoding).
* Each component is unimodal on ``[floor, 1]``. Heavy blocking, hardening or very high error
  rates can break this; check the overlay chart in the quality report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from oda_fed.matching.candidates import Candidates, MatchingInputError

__all__ = [
    "MixtureFit",
    "best_scores",
    "runner_up_scores",
    "QualityEstimate",
    "estimate_quality",
    "fit_mixture",
    "mixture_density",
]

# Exact matches score exactly 1.0 (and the floor itself 0.0 after mapping); the beta log-density
# is infinite there, so mapped scores are kept this far inside (0, 1). It is below the smallest
# gap between Dice values of 1024-bit CLKs mapped from [0.5, 1], so no two scores swap order.
_EDGE = 5e-4
# Fewer scores than this above the floor cannot support five parameters.
_MIN_SCORES = 10
_MAX_ITER = 1000
_TOL = 1e-7
_STARTS = 3
# Estimated F1 values this close count as tied when recommending a threshold.
_F1_TIE = 1e-4


@dataclass(frozen=True)
class MixtureFit:
    """A fitted two-component beta mixture over Dice scores mapped from ``[floor, 1]`` to ``(0, 1)``.

    Attributes
    ----------
    weight_match
        Estimated share of the scores at or above ``floor`` that are matches; NaN when no fit was
        possible.
    match_params, nonmatch_params
        Beta ``(a, b)`` of each component, on the mapped scale; NaN when no fit was possible.
    converged
        Whether EM stopped because the parameters stopped moving (not at the iteration cap).
    iterations
        EM iterations run in the best start.
    floor
        The floor the scores were cut and mapped at.
    n_scores
        Number of finite scores at or above ``floor`` the fit used.
    reason
        Why there is no fit (``None`` when there is one), e.g. ``"no scores at or above the floor"``.
    n_runner_up
        Number of runner-up scores (at or above ``floor``, of records whose best score the fit
        used) that informed the non-match component; 0 when none were given.
    """

    weight_match: float
    match_params: tuple[float, float]
    nonmatch_params: tuple[float, float]
    converged: bool
    iterations: int
    floor: float = 0.5
    n_scores: int = 0
    reason: str | None = None
    n_runner_up: int = 0

    @property
    def ok(self) -> bool:
        """Whether the fit has usable parameters."""
        return self.reason is None


@dataclass(frozen=True)
class QualityEstimate:
    """Estimated pairwise precision, recall and F1 at each threshold of a grid.

    Attributes
    ----------
    thresholds
        The grid, ascending.
    precision, recall, f1
        Estimates at each threshold (a score ``>= threshold`` is linked). Precision is 1.0 where
        no score reaches the threshold. All NaN when the fit is not usable.
    recommended
        The grid threshold with the highest estimated F1 (the middle one where several are within
        1e-4 of it); NaN when the fit is not usable.
    fit
        The mixture the estimates come from.
    reason
        Why the curves are NaN, or ``None``.
    """

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    recommended: float
    fit: MixtureFit | None = None
    reason: str | None = None
    #: ``(threshold, precision, recall)`` of the linkage as resolved, where it was estimated
    #: (field-aware linkage): entities of three or more sources join pairs that no score of
    #: their own passes, which the curves, pair by pair, do not count.
    resolved: tuple[float, float, float] | None = None

    def at(self, threshold: float) -> tuple[float, float, float]:
        """``(precision, recall, f1)`` at the grid point nearest ``threshold``, or of the
        resolved linkage at its threshold.

        Examples
        --------
        >>> est = estimate_quality(np.array([]))
        >>> est.at(0.8)
        (nan, nan, nan)
        """
        if self.resolved is not None and abs(self.resolved[0] - threshold) < 1e-9:
            _, p, r = self.resolved
            return p, r, 2 * p * r / (p + r) if p + r > 0 else 0.0
        i = int(np.argmin(np.abs(self.thresholds - threshold)))
        return float(self.precision[i]), float(self.recall[i]), float(self.f1[i])


def best_scores(candidates: Candidates, *, side: Literal["left", "right"] = "left") -> np.ndarray:
    """The highest candidate score of each record of one side that has any candidate.

    Pass the side with fewer records: in a 1-to-1 linkage each of its records has at most one
    match, so its best scores split cleanly into matches and non-matches.

    Parameters
    ----------
    candidates
        Candidate pairs, e.g. from ``dice_candidates(a, b, threshold=0.5)``.
    side
        ``"left"`` (rows of ``a``) or ``"right"`` (rows of ``b``).

    Returns
    -------
    numpy.ndarray
        ``float64``, one score per record with a candidate, in record order.

    Examples
    --------
    >>> c = Candidates(left=np.array([0, 1, 0]), right=np.array([1, 0, 0]),
    ...                score=np.array([0.9, 0.8, 0.6]))
    >>> best_scores(c).tolist(), best_scores(c, side="right").tolist()
    ([0.9, 0.8], [0.8, 0.9])
    """
    if side not in ("left", "right"):
        raise MatchingInputError(f"side must be 'left' or 'right', got {side!r}")
    index = np.asarray(candidates.left if side == "left" else candidates.right, dtype=np.int64)
    score = np.asarray(candidates.score, dtype=np.float64)
    if index.size == 0:
        return np.empty(0, dtype=np.float64)
    # Sort by record, score descending; the first row of each record is its best.
    order = np.lexsort((-score, index))
    keep = np.ones(order.size, dtype=bool)
    keep[1:] = index[order][1:] != index[order][:-1]
    return score[order][keep]


def runner_up_scores(
    candidates: Candidates, *, side: Literal["left", "right"] = "left"
) -> np.ndarray:
    """The second-highest candidate score of each record of one side that has any candidate.

    Aligned with :func:`best_scores` (same records, same order), NaN for a record with a single
    candidate. Under 1-to-1 linkage a record has at most one match, so when its best candidate
    is its match the runner-up is its best non-match: :func:`fit_mixture` uses these to learn
    the non-match component even when (nearly) every record has a match.

    Parameters
    ----------
    candidates
        Candidate pairs, e.g. from ``dice_candidates(a, b, threshold=0.5)``.
    side
        ``"left"`` (rows of ``a``) or ``"right"`` (rows of ``b``); the side given to
        :func:`best_scores`.

    Returns
    -------
    numpy.ndarray
        ``float64``, one score (or NaN) per record with a candidate, in record order.

    Examples
    --------
    >>> c = Candidates(left=np.array([0, 1, 0]), right=np.array([1, 0, 0]),
    ...                score=np.array([0.9, 0.8, 0.6]))
    >>> runner_up_scores(c).tolist(), runner_up_scores(c, side="right").tolist()
    ([0.6, nan], [0.6, nan])
    """
    if side not in ("left", "right"):
        raise MatchingInputError(f"side must be 'left' or 'right', got {side!r}")
    index = np.asarray(candidates.left if side == "left" else candidates.right, dtype=np.int64)
    score = np.asarray(candidates.score, dtype=np.float64)
    if index.size == 0:
        return np.empty(0, dtype=np.float64)
    order = np.lexsort((-score, index))
    index, score = index[order], score[order]
    first = np.ones(index.size, dtype=bool)
    first[1:] = index[1:] != index[:-1]
    starts = np.flatnonzero(first)
    # A record's second row exists when the next row is not the first of another record.
    second = starts + 1
    has_second = second < index.size
    has_second[has_second] = ~first[second[has_second]]
    out = np.full(starts.size, np.nan)
    out[has_second] = score[second[has_second]]
    return out


def _check_scores(scores: np.ndarray) -> np.ndarray:
    values = np.asarray(scores)
    if values.ndim != 1:
        raise MatchingInputError(f"scores must be a 1-D array, got {values.ndim}-D")
    if values.size and not np.issubdtype(values.dtype, np.number):
        raise MatchingInputError(f"scores must be numbers, got dtype {values.dtype}")
    return values.astype(np.float64, copy=False)


def _check_floor(floor: float) -> float:
    value = float(floor)
    if not 0.0 <= value < 1.0:
        raise MatchingInputError(f"floor must satisfy 0 <= floor < 1, got {value!r}")
    return value


def _mapped(scores: np.ndarray, floor: float) -> np.ndarray:
    kept = scores[np.isfinite(scores) & (scores >= floor)]
    return np.clip((kept - floor) / (1.0 - floor), _EDGE, 1.0 - _EDGE)


def _log_beta_pdf(u: np.ndarray, a: float, b: float) -> np.ndarray:
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    return (a - 1.0) * np.log(u) + (b - 1.0) * np.log1p(-u) + log_norm


def _moments(u: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Beta ``(a, b)`` matching the weighted mean and variance of ``u``."""
    total = float(weights.sum())
    mean = float(weights @ u) / total
    var = float(weights @ (u - mean) ** 2) / total
    # A variance at or above mean * (1 - mean) has no beta; a zero variance has an infinitely
    # sharp one. Keep both inside the range where a and b are finite and positive.
    limit = mean * (1.0 - mean)
    var = min(max(var, 1e-8), 0.999 * limit)
    common = limit / var - 1.0
    return mean * common, (1.0 - mean) * common


def _responsibilities(u: np.ndarray, weight: float, match: tuple, nonmatch: tuple) -> tuple:
    """Posterior match probability of each score and the mixture's log-likelihood."""
    log_m = math.log(weight) + _log_beta_pdf(u, *match)
    log_n = math.log1p(-weight) + _log_beta_pdf(u, *nonmatch)
    log_total = np.logaddexp(log_m, log_n)
    return np.exp(log_m - log_total), float(log_total.sum())


def _em(
    u: np.ndarray, resp: np.ndarray, runner: np.ndarray, owner: np.ndarray
) -> tuple[float, tuple, tuple, bool, int, float]:
    """EM from the start ``resp``; ``runner[k]`` is the mapped runner-up of record ``owner[k]``.

    The non-match component is the distribution of a record's best non-match score. A record's
    best score samples it when the record has no match (weight ``1 - r``), and its runner-up
    samples it when the best is the match (weight ``r``); when the best is a non-match the
    runner-up is only a second-best non-match, lower than the component, so it gets no weight
    there. With no runner-ups this is the plain two-component EM.
    """
    converged = False
    previous = None
    objective = -math.inf
    iterations = 0
    pooled = np.concatenate([u, runner])
    weight, match, nonmatch = math.nan, (math.nan, math.nan), (math.nan, math.nan)
    while iterations < _MAX_ITER:
        iterations += 1
        # Both components keep a sliver of every score so neither can collapse to zero weight.
        resp = np.clip(resp, 1e-12, 1.0 - 1e-12)
        weight = float(resp.mean())
        match = _moments(u, resp)
        nonmatch = _moments(pooled, np.concatenate([1.0 - resp, resp[owner]]))
        current = np.array([weight, *match, *nonmatch])
        resp, objective = _responsibilities(u, weight, match, nonmatch)
        # Starts are compared on the best scores' likelihood plus the runner-ups' expected
        # non-match log-density, the part of the model the runner-ups enter.
        if runner.size:
            objective += float(resp[owner] @ _log_beta_pdf(runner, *nonmatch))
        if previous is not None and np.all(
            np.abs(current - previous) <= _TOL * (1.0 + np.abs(previous))
        ):
            converged = True
            break
        previous = current
    return weight, match, nonmatch, converged, iterations, objective


def _no_fit(floor: float, n: int, reason: str) -> MixtureFit:
    nan = (math.nan, math.nan)
    return MixtureFit(
        weight_match=math.nan,
        match_params=nan,
        nonmatch_params=nan,
        converged=False,
        iterations=0,
        floor=floor,
        n_scores=n,
        reason=reason,
    )


def _aligned_runner_up(
    scores: np.ndarray, runner_up: np.ndarray | None, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mapped runner-ups at or above ``floor`` and the index, among the kept best scores, of the
    record each belongs to."""
    if runner_up is None:
        return np.empty(0), np.empty(0, dtype=np.int64)
    values, runner = _check_scores(scores), _check_scores(runner_up)
    if runner.shape != values.shape:
        raise MatchingInputError(
            f"runner_up must have one entry per score ({values.size}), got {runner.size}; "
            "pass runner_up_scores() of the same candidates and side as best_scores()"
        )
    kept = np.isfinite(values) & (values >= floor)
    runner = runner[kept]
    usable = np.isfinite(runner) & (runner >= floor)
    owner = np.flatnonzero(usable)
    mapped = np.clip((runner[usable] - floor) / (1.0 - floor), _EDGE, 1.0 - _EDGE)
    return mapped, owner


def fit_mixture(
    scores: np.ndarray,
    *,
    floor: float = 0.5,
    seed: int = 0,
    runner_up: np.ndarray | None = None,
) -> MixtureFit:
    """Fit a match / non-match beta mixture to the Dice scores at or above ``floor`` by EM.

    EM is started from a split of the scores at their midpoint between floor and 1 and from
    ``_STARTS - 1`` seeded random splits; the start with the highest log-likelihood wins, so the
    result is deterministic for a given ``seed``.

    Parameters
    ----------
    scores
        Best Dice score per record (:func:`best_scores` of ``dice_candidates(a, b,
        threshold=floor)``); NaN and scores below ``floor`` are ignored.
    floor
        Lowest score modelled; candidates should have been generated at this threshold or lower.
    seed
        Seed of the random starts.
    runner_up
        Runner-up score per record, aligned with ``scores`` (:func:`runner_up_scores` of the same
        candidates and side); NaN or below ``floor`` where a record has none. Strongly
        recommended: without it the non-match component is learnt only from records whose best
        score is a non-match, so the fit assumes a good share of records have no match and
        splits the matches when (nearly) all have one.

    Returns
    -------
    MixtureFit
        With ``reason`` set (and NaN parameters) when fewer than 10 scores reach the floor or all
        of them are equal: there is then nothing to separate.

    Raises
    ------
    MatchingInputError
        When ``scores`` is not a 1-D numeric array, ``floor`` is outside ``[0, 1)`` or
        ``runner_up`` is not aligned with ``scores``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = np.concatenate([0.5 + 0.2 * rng.beta(1, 6, 5000), 0.85 + 0.15 * rng.beta(5, 1, 500)])
    >>> fit = fit_mixture(s)
    >>> fit.converged, round(fit.weight_match, 2)
    (True, 0.09)
    """
    floor = _check_floor(floor)
    u = _mapped(_check_scores(scores), floor)
    if u.size < _MIN_SCORES:
        return _no_fit(floor, int(u.size), f"only {u.size} scores at or above the floor {floor}")
    if float(u.max() - u.min()) <= 0.0:
        return _no_fit(floor, int(u.size), "all scores at or above the floor are equal")

    rng = np.random.default_rng(seed)
    starts = [(u > 0.5).astype(np.float64)]
    if starts[0].min() == starts[0].max():
        # Everything on one side of the midpoint: split at the median instead.
        starts[0] = (u > np.median(u)).astype(np.float64)
    for _ in range(_STARTS - 1):
        cut = rng.uniform(0.2, 0.8)
        starts.append(np.where(u > np.quantile(u, cut), 0.9, 0.1))

    runner, owner = _aligned_runner_up(scores, runner_up, floor)
    best = max((_em(u, start, runner, owner) for start in starts), key=lambda result: result[-1])
    weight, a, b, converged, iterations, _ = best
    match, nonmatch = (a, b) if a[0] / sum(a) >= b[0] / sum(b) else (b, a)
    if match is not a:
        weight = 1.0 - weight
    return MixtureFit(
        weight_match=weight,
        match_params=(float(match[0]), float(match[1])),
        nonmatch_params=(float(nonmatch[0]), float(nonmatch[1])),
        converged=converged,
        iterations=iterations,
        floor=floor,
        n_scores=int(u.size),
        n_runner_up=int(runner.size),
    )


def mixture_density(fit: MixtureFit, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted match and non-match densities at Dice scores ``x``, per unit of score.

    Multiply by ``fit.n_scores * bin_width`` to overlay on a histogram of the scores. Zero below
    the floor; NaN everywhere when the fit is not usable.

    Examples
    --------
    >>> fit = MixtureFit(0.5, (5.0, 1.0), (1.0, 5.0), True, 10, floor=0.5, n_scores=100)
    >>> m, n = mixture_density(fit, np.array([0.25, 0.75]))
    >>> m.tolist()[0], n.tolist()[0]
    (0.0, 0.0)
    """
    x = np.asarray(x, dtype=np.float64)
    if not fit.ok:
        return np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    inside = x >= fit.floor
    u = np.clip((x - fit.floor) / (1.0 - fit.floor), _EDGE, 1.0 - _EDGE)
    scale = 1.0 / (1.0 - fit.floor)
    match = fit.weight_match * np.exp(_log_beta_pdf(u, *fit.match_params)) * scale
    nonmatch = (1.0 - fit.weight_match) * np.exp(_log_beta_pdf(u, *fit.nonmatch_params)) * scale
    return np.where(inside, match, 0.0), np.where(inside, nonmatch, 0.0)


def _recommend(thresholds: np.ndarray, f1: np.ndarray) -> float:
    """The middle of the grid points whose F1 is within ``_F1_TIE`` of the best.

    Where matches and non-matches are well apart, F1 is flat across the gap between them and
    the plain arg-max would land on an edge by rounding noise; the middle is the threshold least
    sensitive to a shift in either group.
    """
    if not np.any(np.isfinite(f1)):
        return math.nan
    near_best = np.flatnonzero(f1 >= np.nanmax(f1) - _F1_TIE)
    return float(thresholds[near_best[near_best.size // 2]])


def estimate_quality(
    scores: np.ndarray,
    *,
    fit: MixtureFit | None = None,
    grid: np.ndarray | None = None,
    runner_up: np.ndarray | None = None,
) -> QualityEstimate:
    """Estimate precision, recall and F1 at each threshold, and recommend the F1-best one.

    See the module docstring for the estimator and its assumptions.

    Parameters
    ----------
    scores
        The best scores per record the fit was (or will be) made on (:func:`best_scores`).
    fit
        A fit of these scores; fitted with :func:`fit_mixture` defaults when ``None``.
    grid
        Thresholds to evaluate; default every 0.01 from the fit's floor to 1.0.
    runner_up
        Runner-up score per record, aligned with ``scores`` (:func:`runner_up_scores`), passed
        to :func:`fit_mixture` when ``fit`` is ``None``; strongly recommended, and needed when
        (nearly) every record has a match.

    Returns
    -------
    QualityEstimate
        NaN curves and recommendation, with ``reason`` set, when the fit is not usable.

    Raises
    ------
    MatchingInputError
        When ``scores`` or ``grid`` is not a 1-D numeric array.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = np.concatenate([0.5 + 0.2 * rng.beta(1, 6, 5000), 0.85 + 0.15 * rng.beta(5, 1, 500)])
    >>> est = estimate_quality(s)
    >>> 0.7 <= est.recommended <= 0.85, round(est.at(0.8)[0], 3)
    (True, 1.0)
    """
    values = _check_scores(scores)
    if fit is None:
        fit = fit_mixture(values, runner_up=runner_up)
    if grid is None:
        steps = int(round((1.0 - fit.floor) / 0.01))
        thresholds = np.round(np.linspace(fit.floor, 1.0, steps + 1), 10)
    else:
        thresholds = np.sort(_check_scores(grid))
    nan_curve = np.full(thresholds.shape, np.nan)
    if not fit.ok:
        return QualityEstimate(
            thresholds, nan_curve, nan_curve, nan_curve, math.nan, fit=fit, reason=fit.reason
        )

    kept = values[np.isfinite(values) & (values >= fit.floor)]
    u = np.clip((kept - fit.floor) / (1.0 - fit.floor), _EDGE, 1.0 - _EDGE)
    resp, _ = _responsibilities(u, fit.weight_match, fit.match_params, fit.nonmatch_params)
    # Cumulative sums from the top: matches and scores at or above each threshold in one pass.
    order = np.argsort(kept)
    sorted_scores = kept[order]
    match_above = np.concatenate([np.cumsum(resp[order][::-1])[::-1], [0.0]])
    first = np.searchsorted(sorted_scores, thresholds, side="left")
    expected_matches = match_above[first]
    linked = (kept.size - first).astype(np.float64)
    total_matches = float(resp.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(linked > 0, expected_matches / np.maximum(linked, 1.0), 1.0)
        recall = expected_matches / total_matches if total_matches > 0 else nan_curve.copy()
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    recommended = _recommend(thresholds, f1)
    return QualityEstimate(thresholds, precision, recall, f1, recommended, fit=fit)
