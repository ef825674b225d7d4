"""Field-aware linkage of several sources: candidates, comparison vectors, Fellegi–Sunter weights
trained without truth, and resolution by match probability (:mod:`.probabilistic`).

The steps, for ``[linkage] method = "fields"``:

1. **Candidates.** CLK similarity at a blocking threshold (the best threshold the CLK
   quality estimate finds, less 0.15 where all pairs are scored and as it is where LSH
   blocks, at least 0.5; or the project's number), over all pairs or with LSH as the
   project's blocking decides, together with pairs whose keyed tokens agree on a rule of
   :func:`~.probabilistic.blocking_rules`.
2. **u** from the levels of random record pairs; **m** and the prior by EM in sessions blocked
   on the date of birth and on the sound of the names (:func:`~.probabilistic.train`).
3. **Resolution.** With at most one record per source in an entity (the default), a pair's
   probability weighs its rivals on both sides: each record has at most one match in the other
   source (:func:`exclusive`), and each pair of sources its own share of matching pairs
   (:func:`pair_prior`). Candidates at or above ``match_probability`` are resolved greedily by
   probability.
4. **The estimate.** The expected number of matches is the larger of the candidates' (each
   record of the smaller source of a pair counts the total probability of its candidates, at
   most 1) and the model's count of all matches (:func:`~.probabilistic.train`), which also
   counts the matches no candidate rule found. Each record of the smaller source has a best
   candidate, its probability the chance it is right: precision at a threshold is the mean of
   those at or above it, recall their sum over the expected matches. At the threshold used,
   the entities as resolved are estimated instead (:func:`resolved_pairs`): with three or more
   sources they link pairs that no score of their own passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from oda_fed.encoding.evidence import Evidence
from oda_fed.matching import probabilistic as fs
from oda_fed.matching.blocking import Blocking, BlockStats, _sorted_unique, blocked_candidates
from oda_fed.matching.candidates import Candidates, MatchingInputError
from oda_fed.matching.executor import Executor
from oda_fed.matching.link import TokenConflicts, Tokens, apply_tokens
from oda_fed.matching.quality import QualityEstimate
from oda_fed.matching.settings import TokenRule
from oda_fed.matching.solve import Clustering, PairCandidates

Progress = Callable[[str], None]

#: Random record pairs counted for u, across all pairs of sources.
U_PAIRS = 500_000
#: Most pairs of a training session EM reads, per pair of sources: a uniform sample of more
#: (a million records give tens of millions of pairs of one birth date) gives the same m and
#: share of matches, at a fraction of the memory.
SESSION_PAIRS = 2_000_000
#: Most pairs of records sharing a location that :func:`train_model` compares, over all sources.
HOUSEHOLD_SAMPLE = 1_000_000
#: Blocking threshold below the CLK-only threshold, and its floor.
BLOCKING_MARGIN = 0.15
BLOCKING_FLOOR = 0.5
#: ... when some pair of sources is blocked by LSH: its cost grows steeply as the threshold
#: falls (1M x 1M ukpop: 127 s at 0.05 below, 28 s at 0), and the token rules find nearly all
#: that the lower threshold would (12k of its 23k matches more).
LSH_BLOCKING_MARGIN = 0.0


#: Most rounds of belief propagation in :func:`exclusive` (it settles in a few).
BP_ROUNDS = 30
#: ... or until no probability moves by more than this in a round.
BP_SETTLED = 1e-3
#: Odds, as a share of a record's chance of having no match, below which a candidate pair
#: passes no messages in :func:`exclusive`: it would move its rivals' odds by less than that.
ACTIVE_ODDS = 1e-3

#: One pair of sources' candidates: ``(i, j, left, right, probability)``.
Scored = tuple[int, int, np.ndarray, np.ndarray, np.ndarray]


def _cross_pairs(sizes: Sequence[int]) -> int:
    """Record pairs across sources."""
    return sum(a * b for k, a in enumerate(sizes) for b in sizes[k + 1 :])


def blocking_threshold(recommended: float, *, lsh: bool = False) -> float:
    """The CLK similarity candidates need in field-aware linkage, from the CLK-only threshold."""
    if not np.isfinite(recommended):
        return 0.6
    margin = LSH_BLOCKING_MARGIN if lsh else BLOCKING_MARGIN
    return float(max(BLOCKING_FLOOR, round(recommended - margin, 2)))


def _candidates(
    a: np.ndarray, b: np.ndarray, *, threshold: float, blocking, executor: Executor | None = None
) -> tuple[Candidates, BlockStats | None]:
    if blocking.uses_lsh(len(a), len(b)):
        params = blocking.params_for(a, b, threshold=threshold)
        return blocked_candidates(a, b, threshold=threshold, params=params,
                                  max_block=blocking.max_block, executor=executor)  # fmt: skip
    return (executor or Executor()).dice(a, b, threshold=threshold), None


def pair_candidates(
    a: np.ndarray,
    b: np.ndarray,
    ev_a: Evidence,
    ev_b: Evidence,
    *,
    threshold: float,
    rules: Sequence[tuple[str, ...]],
    blocking,
    executor: Executor | None = None,
) -> tuple[np.ndarray, np.ndarray, BlockStats | None]:
    """Candidate row pairs of two sources: CLK similarity or agreeing tokens, each pair once,
    sorted by left then right; with the LSH blocking's figures (None: all pairs scored).
    ``executor`` runs the CLK similarity and token rules (default: in this process)."""
    found, stats = _candidates(a, b, threshold=threshold, blocking=blocking, executor=executor)
    tl, tr = (executor or Executor()).token_pairs(ev_a, ev_b, rules)
    width = max(len(b), 1)
    # Sorted, not np.unique, which hashes since numpy 2.3: 4 s against 0.13 s for 5M keys.
    key = _sorted_unique(np.concatenate([found.left * width + found.right, tl * width + tr]))
    return key // width, key % width, stats


def _households(
    comparisons: Sequence[fs.Comparison],
    evidence: Sequence[Evidence],
    rng: np.random.Generator,
    run: Executor,
) -> tuple[np.ndarray, np.ndarray]:
    """The level patterns, with their counts, of pairs of records within each source that share
    a location (:func:`~.probabilistic.household_rules`), a sample of at most
    :data:`HOUSEHOLD_SAMPLE`."""
    found = []
    rules = fs.household_rules(comparisons)
    for ev in evidence if rules else ():
        left, right = fs.token_pairs(ev, ev, rules)
        keep = left < right
        share = HOUSEHOLD_SAMPLE / len(evidence) / max(int(keep.sum()), 1)
        keep &= rng.random(len(left)) < share
        found.append(run.level_counts(comparisons, ev, ev, left[keep], right[keep]))
    return fs.add_counts(found, [len(c.labels) for c in comparisons])


def train_model(
    comparisons: Sequence[fs.Comparison],
    evidence: Sequence[Evidence],
    *,
    seed: int = 0,
    one_per_source: bool = True,
    executor: Executor | None = None,
) -> fs.Model:
    """u from random pairs and m with the prior from the training sessions, over all pairs of
    sources. With one record per person in a source (``one_per_source``), pairs within a source
    that share a location are different people: their levels give u where two records share
    one (:func:`~.probabilistic.household`).

    ``executor`` runs the comparisons (default: in this process). u and the household tables
    need only counts of level patterns, a map-reduce on a cluster; the sessions' rows come back,
    since each record's pairs compete for its one match (:func:`~.probabilistic.train`)."""
    run = executor or Executor()
    sizes = [len(e) for e in evidence]
    n_levels = [len(c.labels) for c in comparisons]
    random = fs.random_pairs(sizes, U_PAIRS, seed=seed)
    patterns, counts = fs.add_counts(
        [run.level_counts(comparisons, evidence[i], evidence[j], left, right)
         for i, j, left, right in random], n_levels,
    )  # fmt: skip
    u = fs.estimate_u(patterns, n_levels, counts=counts)
    present = fs.presence(patterns, counts)
    sessions = []
    rng = np.random.default_rng(seed)
    # A generator of its own: the sessions' samples stay those of the same seed without it.
    nearby = np.random.default_rng([seed, 1])
    household = None
    if one_per_source:
        seen, times = _households(comparisons, evidence, nearby, run)
        household = fs.household(comparisons, seen, u, counts=times)
    n = len(evidence)
    for left_out, tokens, agree in fs.session_rules(comparisons):
        found, weights, ends, which_pair, pairs, sampled = [], [], ([], []), [], 0, False
        for i in range(n):
            for j in range(i + 1, n):
                left, right = fs.token_pairs(evidence[i], evidence[j], [tokens], max_block=50_000)
                pairs += len(left)
                weight = 1.0
                if len(left) > SESSION_PAIRS:
                    # Every pair of a sample of the left records: each keeps its rival pairs,
                    # and the count of matches varies no more than a sample of pairs would.
                    chosen = rng.random(len(evidence[i])) < SESSION_PAIRS / len(left)
                    keep = chosen[left]
                    weight = len(left) / max(int(keep.sum()), 1)
                    left, right, sampled = left[keep], right[keep], True
                weights.append(np.full(len(left), weight))
                ends[0].append((left.astype(np.int64) * n + j) * n + i)
                ends[1].append((right.astype(np.int64) * n + i) * n + j)
                which_pair.append(np.full(len(left), len(which_pair), dtype=np.int64))
                found.append(run.levels(comparisons, evidence[i], evidence[j], left, right))
        if pairs:
            weighted = np.concatenate(weights)
            # A sampled right record has lost most of its rivals: only the left ones compete.
            competing = (np.concatenate(ends[0]),) if sampled else (
                np.concatenate(ends[0]), np.concatenate(ends[1]))  # fmt: skip
            sessions.append(
                fs.Session(
                    left_out,
                    np.concatenate(found),
                    pairs,
                    agree,
                    weighted if sampled else None,
                    competing,
                    np.concatenate(which_pair) if n > 2 else None,
                )
            )
    return fs.train(comparisons, sessions, u, all_pairs=_cross_pairs(sizes), present=present,
                    household=household)  # fmt: skip


def estimate(
    best: np.ndarray, expected_matches: float, *, grid: np.ndarray | None = None
) -> QualityEstimate:
    """Precision and recall at each probability threshold, from each record's best candidate's
    probability and the expected number of matches (see the module docstring)."""
    thresholds = np.round(np.arange(0.05, 1.0, 0.01), 2) if grid is None else grid
    if not len(best) or expected_matches <= 0:
        nan = np.full(len(thresholds), np.nan)
        return QualityEstimate(thresholds, nan, nan, nan, float("nan"),
                               reason="no candidate pairs")  # fmt: skip
    precision, recall = np.empty(len(thresholds)), np.empty(len(thresholds))
    for k, t in enumerate(thresholds):
        chosen = best[best >= t]
        precision[k] = chosen.mean() if len(chosen) else 1.0
        recall[k] = min(1.0, chosen.sum() / expected_matches)
    f1 = np.divide(2 * precision * recall, precision + recall,
                   out=np.zeros(len(thresholds)), where=precision + recall > 0)  # fmt: skip
    return QualityEstimate(thresholds, precision, recall, f1, float(thresholds[int(np.argmax(f1))]))


def exclusive(
    weight: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    *,
    sizes: tuple[int, int],
    prior: float,
    views: Sequence[int] = (0, 1),
) -> np.ndarray:
    """Match probabilities of candidate pairs when each record has at most one match in the other
    source (``one_record_per_partner``), from their match weights.

    Record ``i`` has a match in the other source with probability ``pi`` (the expected matches
    over the source's size), and if it has one it is among its candidates: records outside them
    add almost nothing. The posterior of such a one-to-one matching is found by belief
    propagation (sum-product), each record telling each of its pairs how likely it is to be
    taken by another, ``O`` being a pair's match weight as odds (prior included):

        to_ij = 1 / (1 - pi_i + sum over k != j of O(i, k) * from_k)

    and a pair's odds are ``O(i, j) * to_ij * from_ji``, the same message from ``j``'s side. A
    lone candidate of two records that very likely have matches is then likely, which pairwise
    Fellegi–Sunter, seeing one pair at a time, cannot say (FEBRL4: recall 0.985 to 0.992 at
    precision 1.000); rivals share the belief, and a rival that is some other record's only
    candidate gives way. Both sides count: with one side only, lone candidates came out
    underconfident (ukpop 1M x 1M: a partial name, the same date of birth and a move scored
    0.55 where 82 % were matches).

    ``views`` are the sides whose alternatives count: ``(0,)`` when only the left records are new
    (an update of a linked index), since how likely an old record is to match one of a few new
    ones says nothing of whether this is that one; one side is one round.
    """
    odds = np.exp2(np.clip(weight, -60, 60))
    expected = prior * sizes[0] * sizes[1]
    slack = [1 - float(np.clip(expected / max(n, 1), 0.01, 0.99)) for n in sizes]
    # Pairs too unlikely to take anything from a rival (most LSH candidates at a million
    # records) pass no messages; they still receive them.
    active = np.flatnonzero(odds > ACTIVE_ODDS * min(slack))
    ends = (left[active], right[active])
    inbound = [np.ones(len(active)), np.ones(len(active))]
    belief = np.zeros(len(active))
    for _ in range(BP_ROUNDS if len(views) > 1 else 1):
        for v in views:
            seen = odds[active] * inbound[1 - v]
            others = np.bincount(ends[v], weights=seen, minlength=sizes[v])[ends[v]] - seen
            inbound[v] = 1.0 / (slack[v] + np.maximum(others, 0.0))
        before, belief = belief, odds[active] * inbound[0] * inbound[1]
        # Settled when no pair's probability moves by more than BP_SETTLED.
        if np.abs(belief / (1 + belief) - before / (1 + before)).max(initial=0) < BP_SETTLED:
            break
    belief = odds.copy()
    for v in views:  # every pair's belief, from the settled messages
        seen = np.zeros(len(odds))
        seen[active] = odds[active] * inbound[1 - v]
        side = (left, right)[v]
        others = np.bincount(ends[v], weights=seen[active], minlength=sizes[v])[side] - seen
        belief /= slack[v] + np.maximum(others, 0.0)
    return belief / (1.0 + belief)


def _log_odds(p: float) -> float:
    return float(np.log2(p / (1 - p)))


def pair_prior(model: fs.Model, k: int, sizes: Sequence[int]) -> float | None:
    """The share of matching pairs between the ``k``-th pair of sources (in pair order): its
    share of the matches the model counted (:attr:`~.probabilistic.Model.split`) over its
    pairs. None where the model did not split its count."""
    if model.split is None or k >= len(model.split) or model.split[k] <= 0:
        return None
    i, j = list(itertools.combinations(range(len(sizes)), 2))[k]
    count = model.split[k] * model.prior * _cross_pairs(sizes)
    return float(np.clip(count / max(sizes[i] * sizes[j], 1), 1e-12, 0.5))


@dataclass(frozen=True)
class FieldScoring:
    """How field-aware linkage scores a pair of sources once the model is trained: the same for
    a full link and for an update of a linked index (:mod:`oda_fed.index.incremental`)."""

    comparisons: tuple[fs.Comparison, ...]
    model: fs.Model
    #: The CLK similarity a candidate needs (token rules find the others).
    clk_threshold: float
    blocking: Blocking
    one_per_source: bool = True
    token_rule: TokenRule = "token"
    #: Where the CLK similarity work runs (:mod:`.executor`); None: in this process.
    executor: Executor | None = None

    def score(
        self,
        clks: tuple[np.ndarray, np.ndarray],
        evidence: tuple[Evidence, Evidence],
        tokens: tuple[Tokens, Tokens] | None = None,
        *,
        views: Sequence[int] = (0, 1),
        prior: float | None = None,
    ) -> tuple[Candidates, TokenConflicts, BlockStats | None]:
        """Candidate pairs of two sources with their match probabilities (see :func:`exclusive`
        for ``views``), keyed tokens applied as rules, and the LSH blocking's figures (None:
        all pairs scored). ``prior``: this pair of sources' share of matching pairs, in place of
        the model's (:func:`pair_prior`)."""
        (a, b), (ev_a, ev_b) = clks, evidence
        left, right, stats = pair_candidates(a, b, ev_a, ev_b, threshold=self.clk_threshold,
                                      rules=fs.blocking_rules(self.comparisons),
                                      blocking=self.blocking, executor=self.executor)  # fmt: skip
        levels = (self.executor or Executor()).levels(self.comparisons, ev_a, ev_b, left, right)
        weight = self.model.match_weight(levels)
        if prior is None:
            prior = self.model.prior
        else:
            weight += _log_odds(prior) - _log_odds(self.model.prior)
        if self.one_per_source:
            prob = exclusive(weight, left, right, sizes=(len(a), len(b)), prior=prior,
                             views=views)  # fmt: skip
        else:
            prob = fs.probability(weight)
        found = Candidates(left=left, right=right, score=prob)
        if tokens is None:
            return found, TokenConflicts(), stats
        found, conflicts = apply_tokens(found, a, b, tokens[0], tokens[1],
                                        threshold=self.clk_threshold,
                                        rule=self.token_rule)  # fmt: skip
        return found, conflicts, stats


@dataclass(frozen=True)
class FieldsLinked:
    """What :func:`link_fields` found."""

    clustering: Clustering
    model: fs.Model
    #: Each record's best candidate probability, per pair of sources (the smaller source's).
    best: np.ndarray
    estimate: QualityEstimate
    #: Candidate pairs per pair of sources, in pair order.
    counts: list[int]
    conflicts: TokenConflicts
    #: The CLK similarity candidates needed.
    clk_threshold: float
    #: The LSH blocking of each pair of sources, in pair order (None: all pairs scored).
    stats: list[BlockStats | None] = field(default_factory=list)


def link_fields(
    clks: Sequence[np.ndarray],
    evidence: Sequence[Evidence],
    comparisons: Sequence[fs.Comparison],
    *,
    clk_threshold: float,
    match_probability: float,
    one_per_source: bool,
    blocking,
    tokens: Sequence[Tokens] | None = None,
    token_rule: TokenRule = "token",
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> FieldsLinked:
    """Link ``clks`` with their field ``evidence``.

    Keyed tokens of identifiers (``keyed_token = true``) act as in CLK linkage
    (:func:`~oda_fed.matching.link.apply_tokens`): with ``token_rule = "token"`` agreeing ones
    link at probability 1.0 and differing ones forbid the link; they are rules, not weights.
    ``executor`` runs the CLK candidate work (:mod:`oda_fed.matching.executor`); default: in
    this process.
    """
    if len(evidence) != len(clks) or any(len(e) != len(c) for e, c in zip(evidence, clks,
                                                                          strict=True)):  # fmt: skip
        raise MatchingInputError("field evidence is missing or does not match the CLKs")
    if progress is not None:
        progress("training the match weights")
    model = train_model(comparisons, evidence, one_per_source=one_per_source,
                        executor=executor)  # fmt: skip
    scoring = FieldScoring(tuple(comparisons), model, clk_threshold, blocking, one_per_source,
                           token_rule, executor)  # fmt: skip
    pairs, best, expected, counts = [], [np.empty(0)], 0.0, []
    stats: list[BlockStats | None] = []
    conflicts = TokenConflicts()
    scores_of: list[Scored] = []
    for i in range(len(clks)):
        for j in range(i + 1, len(clks)):
            if progress is not None:
                progress(f"scoring source {i + 1} against source {j + 1}")
            found, settled, blocked = scoring.score(
                (clks[i], clks[j]),
                (evidence[i], evidence[j]),
                None if tokens is None else (tokens[i], tokens[j]),
                prior=pair_prior(model, len(scores_of), [len(c) for c in clks]),
            )
            conflicts = conflicts + settled
            left, right, prob = found.left, found.right, found.score
            counts.append(len(left))
            stats.append(blocked)
            scores_of.append((i, j, left, right, prob))
            pairs.append(PairCandidates(i, j, fs.scored(found, prob, match_probability)))
            small, n = (
                (left, len(clks[i])) if len(clks[i]) <= len(clks[j]) else (right, len(clks[j]))
            )
            top = np.full(n, -1.0)
            np.maximum.at(top, small, prob)
            best.append(top[top >= 0])
            expected += float(np.minimum(1.0, np.bincount(small, weights=prob, minlength=n)).sum())
    if progress is not None:
        progress("resolving entities")
    sizes = [len(c) for c in clks]
    clustering = (executor or Executor()).resolve(sizes, pairs, one_per_source=one_per_source)
    scores = np.concatenate(best)
    # The candidates hold only the matches blocking found; the model counts all of them.
    expected = max(expected, model.prior * _cross_pairs(sizes))
    quality = estimate(scores, expected)
    linked, right_ones = resolved_pairs(clustering.labels, scores_of)
    if linked:
        quality = replace(quality, resolved=(match_probability, right_ones / linked,
                                             min(1.0, right_ones / expected)))  # fmt: skip
    return FieldsLinked(clustering, model, scores, quality, counts, conflicts, clk_threshold,
                        stats)  # fmt: skip


def resolved_pairs(labels: Sequence[np.ndarray], scored: Sequence[Scored]) -> tuple[int, float]:
    """How many record pairs across sources the entities ``labels`` make, and how many of them
    are expected to be matches, from the candidates' probabilities ``scored`` (``(i, j, left,
    right, probability)`` per pair of sources).

    A pair's probability is its own, or, where the entity holds it through a third record,
    the smaller of its two records' best probabilities within the entity (both links right
    make it right): three sources' entities link pairs that no score of their own passes.
    """
    sure = [np.zeros(len(x)) for x in labels]
    inside = []
    for i, j, left, right, prob in scored:
        same = labels[i][left] == labels[j][right]
        inside.append((i, j, left[same], right[same], prob[same]))
        np.maximum.at(sure[i], left[same], prob[same])
        np.maximum.at(sure[j], right[same], prob[same])
    linked, right_ones = 0, 0.0
    for i, j, left, right, prob in inside:
        a = pd.DataFrame({"entity": labels[i], "left": np.arange(len(labels[i]))})
        b = pd.DataFrame({"entity": labels[j], "right": np.arange(len(labels[j]))})
        both = a.merge(b, on="entity")
        rows, cols = both["left"].to_numpy(), both["right"].to_numpy()
        own = pd.Series(prob, index=left * len(labels[j]) + right)
        direct = own.reindex(rows * len(labels[j]) + cols).fillna(0.0).to_numpy()
        linked += len(rows)
        right_ones += float(np.maximum(direct, np.minimum(sure[i][rows], sure[j][cols])).sum())
    return linked, right_ones
