"""Link several sources' CLKs into entities: score every pair of sources, then resolve.

This is the one linkage pipeline; embedded mode (`oda-fed link`) and the coordinator both call it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from oda_fed.matching import (
    Candidates,
    Clustering,
    PairCandidates,
    dice_candidates,  # noqa: F401 - the doctests use it
    kernels,
)
from oda_fed.matching.blocking import Blocking, BlockStats, blocked_candidates
from oda_fed.matching.candidates import MatchingInputError
from oda_fed.matching.executor import Executor
from oda_fed.matching.guard import fit_problems, weak_pairs
from oda_fed.matching.quality import (
    QualityEstimate,
    estimate_quality,
)
from oda_fed.matching.settings import QUALITY_SAMPLE, LinkSettings, TokenRule

if TYPE_CHECKING:
    from oda_fed.encoding.evidence import Evidence
    from oda_fed.matching.probabilistic import Model

Progress = Callable[[str], None]
#: Per source: field -> keyed token per record (any hashable; None where missing).
Tokens = Mapping[str, Sequence[object]]

#: The score a pair gets when a keyed token of an exact identifier agrees.
EXACT_SCORE = 1.0
#: Best scores are fitted down to here, so the quality estimate sees matches and non-matches.
QUALITY_FLOOR = 0.5
#: Under the "clk" rule, an agreeing token links only CLKs at least this similar: well above
#: two unrelated records (about 0.4 at the usual fill).
CLK_RULE_FLOOR = 0.5


@dataclass(frozen=True)
class TokenConflicts:
    """Where keyed tokens and CLK similarity disagreed, and what the project's rule did.

    Attributes
    ----------
    token_agrees_clk_below : int
        Pairs whose tokens agree but whose CLK score is below the threshold.
    linked_by_token : int
        Of those, the pairs the rule still offered for linkage at score 1.0.
    token_differs_clk_above : int
        Pairs at or above the threshold whose tokens differ in a field both hold (and agree in
        none).
    vetoed_by_token : int
        Of those, the pairs the rule removed.
    """

    token_agrees_clk_below: int = 0
    linked_by_token: int = 0
    token_differs_clk_above: int = 0
    vetoed_by_token: int = 0

    def __add__(self, other: TokenConflicts) -> TokenConflicts:
        return TokenConflicts(*(x + y for x, y in zip(self.counts(), other.counts(), strict=True)))

    def counts(self) -> tuple[int, int, int, int]:
        return (
            self.token_agrees_clk_below,
            self.linked_by_token,
            self.token_differs_clk_above,
            self.vetoed_by_token,
        )


@dataclass(frozen=True)
class PairBlocking:
    """How sources ``source_a`` and ``source_b`` were compared: ``stats`` is None for all pairs.

    ``candidates`` counts the pairs passed to resolution, keyed tokens applied.
    """

    source_a: int
    source_b: int
    stats: BlockStats | None
    candidates: int


def _pair_candidates(
    clks: Sequence[np.ndarray],
    i: int,
    j: int,
    *,
    threshold: float,
    tokens: Sequence[Tokens] | None,
    token_rule: TokenRule,
    blocking: Blocking,
    progress: Progress | None,
    executor: Executor | None = None,
) -> tuple[Candidates, BlockStats | None, TokenConflicts]:
    a, b = clks[i], clks[j]
    label = f"source {i + 1} against source {j + 1}"
    if blocking.uses_lsh(len(a), len(b)):
        params = blocking.params_for(a, b, threshold=threshold)

        def bands(done: int, total: int) -> None:
            if progress is not None:
                progress(f"scoring {label}: LSH band {done} of {total}")

        found, stats = blocked_candidates(
            a,
            b,
            threshold=threshold,
            params=params,
            max_block=blocking.max_block,
            progress=bands,
            executor=executor,
        )
    else:
        if progress is not None:
            progress(f"scoring {label}")
        found, stats = (executor or Executor()).dice(a, b, threshold=threshold), None
    conflicts = TokenConflicts()
    if tokens is not None:
        found, conflicts = apply_tokens(
            found, a, b, tokens[i], tokens[j], threshold=threshold, rule=token_rule
        )
    return found, stats, conflicts


def score_pairs(
    clks: Sequence[np.ndarray],
    *,
    threshold: float,
    tokens: Sequence[Tokens] | None = None,
    token_rule: TokenRule = "token",
    blocking: Blocking | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> list[PairCandidates]:
    """Candidates for every pair of sources at ``threshold``, keyed tokens applied by ``token_rule``.

    ``blocking`` (default :class:`~oda_fed.matching.blocking.Blocking()`) decides, per pair of
    sources, between all pairs and LSH blocking. ``executor`` runs the candidate work
    (:mod:`oda_fed.matching.executor`; default: in this process).
    """
    scored = _score_all(clks, threshold, tokens, token_rule, blocking, progress, executor)
    return [p for p, _, _ in scored]


def _score_all(
    clks: Sequence[np.ndarray],
    threshold: float,
    tokens: Sequence[Tokens] | None,
    token_rule: TokenRule,
    blocking: Blocking | None,
    progress: Progress | None,
    executor: Executor | None = None,
) -> list[tuple[PairCandidates, PairBlocking, TokenConflicts]]:
    if len(clks) < 2:
        raise ValueError("linkage needs at least two sources")
    plan = blocking if blocking is not None else Blocking()
    out = []
    for i in range(len(clks)):
        for j in range(i + 1, len(clks)):
            found, stats, conflicts = _pair_candidates(
                clks, i, j, threshold=threshold, tokens=tokens, token_rule=token_rule,
                blocking=plan, progress=progress, executor=executor,
            )  # fmt: skip
            out.append(
                (
                    PairCandidates(source_a=i, source_b=j, candidates=found),
                    PairBlocking(source_a=i, source_b=j, stats=stats, candidates=len(found)),
                    conflicts,
                )
            )
    return out


def link_clks(
    clks: Sequence[np.ndarray],
    *,
    threshold: float,
    one_per_source: bool = True,
    tokens: Sequence[Tokens] | None = None,
    token_rule: TokenRule = "token",
    blocking: Blocking | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
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
        tokens agree in any shared field become a candidate pair with score 1.0, so they are
        resolved before any similarity-only pair; ``token_rule`` settles conflicts with the
        CLKs (:func:`apply_tokens`).
    token_rule
        ``"token"`` (trust identifiers) or ``"clk"`` (trust similarity).
    blocking
        All pairs or LSH blocking per pair of sources; default :class:`Blocking()`.
    progress
        Called with a short description as the work goes on.
    executor
        Where the candidate work runs (:mod:`oda_fed.matching.executor`); default: in this
        process. The entities are the same either way.

    Examples
    --------
    >>> a = np.array([[0b1111]], dtype=np.uint64); b = a.copy()
    >>> link_clks([a, b], threshold=0.9).n_entities
    1
    """
    pairs = score_pairs(
        clks, threshold=threshold, tokens=tokens, token_rule=token_rule, blocking=blocking,
        progress=progress, executor=executor,
    )  # fmt: skip
    if progress is not None:
        progress("resolving entities")
    return (executor or Executor()).resolve([len(c) for c in clks], pairs,
                                            one_per_source=one_per_source)  # fmt: skip


@dataclass(frozen=True)
class LinkOutcome:
    """Entities, the threshold that made them, and the evidence behind them.

    ``best_scores`` are those the quality estimate fitted: each sampled record's best score, on
    the smaller side of every pair of sources; ``sampled`` says how many records that was, of
    ``sample_from``.
    """

    clustering: Clustering
    threshold: float
    best_scores: np.ndarray
    estimate: QualityEstimate
    blocking: tuple[PairBlocking, ...] = ()
    conflicts: TokenConflicts = TokenConflicts()
    sampled: int = 0
    sample_from: int = 0
    #: The match weights, with ``method = "fields"``.
    model: Model | None = None
    #: The CLK similarity candidates needed, with ``method = "fields"``.
    clk_threshold: float | None = None
    #: The lowest threshold ``"auto"`` could choose, when it chose this one.
    auto_floor: float | None = None

    def degenerate(self, sources: Sequence[str]) -> list[str]:
        """Why this linkage cannot be trusted, in words (:mod:`oda_fed.matching.guard`); empty
        when nothing says so."""
        precision, _, _ = self.estimate.at(self.threshold)
        fit = fit_problems(threshold=self.threshold, auto_floor=self.auto_floor,
                           precision=precision, reason=self.estimate.reason)  # fmt: skip
        return fit + weak_pairs(self.clustering.labels, sources)

    def evidence(self, sources: Sequence[str]) -> dict[str, str]:
        """How the linkage was done, as short lines for a report: counts only, never records.

        Examples
        --------
        >>> settings = LinkSettings(threshold=0.9)
        >>> outcome = link_with_quality([np.ones((2, 1), np.uint64)] * 2, settings=settings)
        >>> outcome.evidence(["a", "b"])["a × b"]
        'all 4 pairs scored; 4 candidates'
        """
        lines = {}
        if self.sample_from:
            how = (
                f"all {self.sampled:,} records"
                if self.sampled == self.sample_from
                else f"a seeded sample of {self.sampled:,} of {self.sample_from:,} records"
            )
            lines["quality estimate"] = (
                f"best scores of {how} of the smaller partner of each pair, each against every "
                "record of the other"
            )
        for pair in self.blocking:
            name = f"{sources[pair.source_a]} × {sources[pair.source_b]}"
            st = pair.stats
            size = len(self.clustering.labels[pair.source_a]) * len(
                self.clustering.labels[pair.source_b]
            )
            if st is None:
                lines[name] = f"all {size:,} pairs scored; {pair.candidates:,} candidates"
                continue
            lines[name] = (
                f"LSH blocking, {st.bands} bands of {st.bits_per_band} bits: {st.pairs_compared:,}"
                f" of {st.pairs_total:,} pairs scored (reduction ratio at least "
                f"{st.reduction_ratio:.6f}); largest block {st.largest_block:,} pairs"
                + (f", {st.blocks_skipped:,} blocks skipped" if st.blocks_skipped else "")
                + f"; {st.candidates:,} candidates"
            )
        c = self.conflicts
        if any(c.counts()):
            lines["token conflicts"] = (
                f"{c.token_agrees_clk_below:,} token matches below the CLK threshold "
                f"({c.linked_by_token:,} linked); {c.token_differs_clk_above:,} CLK matches with "
                f"differing tokens ({c.vetoed_by_token:,} not linked)"
            )
        return lines


def quality_scores(
    small: np.ndarray,
    other: np.ndarray,
    *,
    floor: float = QUALITY_FLOOR,
    sample: int = QUALITY_SAMPLE,
    seed: int = 0,
    executor: Executor | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Best and runner-up scores of (a seeded sample of) ``small``'s records against ``other``.

    Each sampled record is scored against every record of ``other`` (no blocking, so the
    estimate sees the whole score distribution down to ``floor``), keeping only its two best
    scores (:func:`~oda_fed.matching.candidates.best_two_scores`), never a list of pairs. Returns
    ``(best, runner_up, records sampled)``, aligned as :func:`~oda_fed.matching.quality.best_scores`
    and :func:`~oda_fed.matching.quality.runner_up_scores`. ``executor`` runs the scoring
    (:mod:`oda_fed.matching.executor`; default: in this process).

    Examples
    --------
    >>> a = np.array([[0b1111]], dtype=np.uint64)
    >>> best, runner_up, n = quality_scores(a, a)
    >>> best.tolist(), n
    ([1.0], 1)
    """
    n = small.shape[0]
    if isinstance(sample, bool) or not isinstance(sample, int | np.integer) or sample < 1:
        raise MatchingInputError(f"the quality sample must be a whole number >= 1, got {sample!r}")
    if n <= sample:
        rows = np.arange(n)
    else:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
    run = executor or Executor()
    best, runner_up = run.best_two(np.ascontiguousarray(small[rows]), other, threshold=floor)
    found = ~np.isnan(best)  # as best_scores(): only records with a score above the floor
    return best[found], runner_up[found], len(rows)


def link_with_quality(
    clks: Sequence[np.ndarray],
    *,
    settings: LinkSettings,
    tokens: Sequence[Tokens] | None = None,
    evidence: Sequence[Evidence] | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> LinkOutcome:
    """Link as :func:`link_clks` under ``settings``, and estimate precision and recall without
    ground truth.

    First the quality pass: for every pair of sources, up to ``settings.quality_sample`` records
    of the smaller source (all of them when it is smaller; a seeded sample otherwise) are scored
    against every record of the other down to 0.5, and their best and runner-up scores are
    fitted with a two-component mixture (:func:`~oda_fed.matching.quality.estimate_quality`;
    the runner-up scores teach the non-match component, so the fit holds when nearly every
    record has a match). ``threshold="auto"`` takes the threshold that maximises the estimated
    F1. Then the candidate pass scores every pair of sources at that threshold, over all pairs
    or with LSH blocking as ``settings.blocking`` decides, applies keyed tokens by
    ``settings.token_rule``, and resolves. ``executor`` runs the candidate pass
    (:mod:`oda_fed.matching.executor`; default: in this process).

    Examples
    --------
    >>> ones = np.ones((2, 1), np.uint64)
    >>> link_with_quality([ones, ones], settings=LinkSettings(threshold=0.9)).threshold
    0.9
    """
    threshold = settings.threshold
    if len(clks) < 2:
        raise ValueError("linkage needs at least two sources")
    floor = QUALITY_FLOOR if threshold == "auto" else min(QUALITY_FLOOR, float(threshold))
    best, runner_up = [np.empty(0)], [np.empty(0)]
    sampled = sample_from = 0
    for i in range(len(clks)):
        for j in range(i + 1, len(clks)):
            if progress is not None:
                progress(f"estimating quality: source {i + 1} against source {j + 1}")
            small, other = (
                (clks[i], clks[j]) if len(clks[i]) <= len(clks[j]) else (clks[j], clks[i])
            )
            b, r, n = quality_scores(small, other, floor=floor, sample=settings.quality_sample,
                                     executor=executor)  # fmt: skip
            best.append(b)
            runner_up.append(r)
            sampled += n
            sample_from += len(small)
    scores = np.concatenate(best)
    estimate = estimate_quality(scores, runner_up=np.concatenate(runner_up))
    if settings.method == "fields":
        return _link_fields(clks, evidence, settings, estimate, sampled, sample_from, progress,
                            tokens, executor)  # fmt: skip
    if threshold == "auto":
        if not np.isfinite(estimate.recommended):
            raise MatchingInputError(
                f'threshold = "auto" could not be estimated ({estimate.reason}); set a number'
            )
        chosen = float(estimate.recommended)
    else:
        chosen = float(threshold)
    scored = _score_all(clks, chosen, tokens, settings.token_rule, settings.blocking, progress,
                        executor)  # fmt: skip
    if progress is not None:
        progress("resolving entities")
    clustering = (executor or Executor()).resolve(
        [len(c) for c in clks], [p for p, _, _ in scored], one_per_source=settings.one_per_source
    )
    conflicts = TokenConflicts()
    for _, _, c in scored:
        conflicts = conflicts + c
    return LinkOutcome(
        clustering=clustering,
        threshold=chosen,
        best_scores=scores,
        estimate=estimate,
        blocking=tuple(b for _, b, _ in scored),
        conflicts=conflicts,
        sampled=sampled,
        sample_from=sample_from,
        auto_floor=QUALITY_FLOOR if threshold == "auto" else None,
    )


def _link_fields(
    clks: Sequence[np.ndarray],
    evidence: Sequence[Evidence] | None,
    settings: LinkSettings,
    clk_estimate: QualityEstimate,
    sampled: int,
    sample_from: int,
    progress: Progress | None,
    tokens: Sequence[Tokens] | None = None,
    executor: Executor | None = None,
) -> LinkOutcome:
    """``method = "fields"``: candidates by CLK similarity below the CLK-only threshold and by
    agreeing tokens, linked by match probability (:mod:`oda_fed.matching.link_fields`)."""
    from oda_fed.encoding.fields import FieldEncoding
    from oda_fed.matching.link_fields import blocking_threshold, link_fields
    from oda_fed.matching.probabilistic import comparisons_for

    if evidence is None:
        raise MatchingInputError(
            'the project links with method = "fields", but the sources carry no field evidence: '
            "encode them with this project"
        )
    lsh = any(
        settings.blocking.uses_lsh(len(a), len(b))
        for k, a in enumerate(clks)
        for b in clks[k + 1 :]
    )
    clk_threshold = (
        blocking_threshold(clk_estimate.recommended, lsh=lsh)
        if settings.threshold == "auto"
        else float(settings.threshold)
    )
    comparisons = comparisons_for([FieldEncoding(n, t) for n, t in settings.fields])
    linked = link_fields(
        clks, evidence, comparisons, clk_threshold=clk_threshold,
        match_probability=settings.match_probability, one_per_source=settings.one_per_source,
        blocking=settings.blocking, tokens=tokens, token_rule=settings.token_rule,
        progress=progress, executor=executor,
    )  # fmt: skip
    pairs = [(i, j) for i in range(len(clks)) for j in range(i + 1, len(clks))]
    return LinkOutcome(
        clustering=linked.clustering,
        threshold=settings.match_probability,
        best_scores=linked.best,
        estimate=linked.estimate,
        blocking=tuple(
            PairBlocking(i, j, stats, n)
            for (i, j), n, stats in zip(pairs, linked.counts, linked.stats, strict=True)
        ),
        conflicts=linked.conflicts,
        sampled=sampled,
        sample_from=sample_from,
        model=linked.model,
        clk_threshold=linked.clk_threshold,
    )


def partners_per_entity(clustering: Clustering) -> np.ndarray:
    """For each entity index, how many sources know it."""
    counts = np.zeros(clustering.n_entities, dtype=np.int64)
    for labels in clustering.labels:
        # one_per_source means each source contributes at most once; unique() keeps it right otherwise
        counts[np.unique(labels)] += 1
    return counts


def entities_by_partner_count(per_entity: np.ndarray | pd.Series) -> dict[int, int]:
    """How many entities are known to 1, 2, … sources, from each entity's number of sources.

    Examples
    --------
    >>> entities_by_partner_count(np.array([1, 2, 2, 3]))
    {1: 1, 2: 2, 3: 1}
    """
    values, freq = np.unique(np.asarray(per_entity), return_counts=True)
    return {int(v): int(f) for v, f in zip(values, freq, strict=True)}


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


def _token_codes(a: Tokens, b: Tokens) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per shared field, integer codes of both sides' tokens (-1 where missing)."""
    out = []
    for field in sorted(set(a) & set(b)):
        left, right = list(a[field]), list(b[field])
        codes, _ = pd.factorize(pd.Series(left + right, dtype=object), use_na_sentinel=True)
        out.append((codes[: len(left)], codes[len(left) :]))
    return out


def _clk_scores(a: np.ndarray, b: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    inter = kernels.pair_intersections(a, b, left, right)
    total = kernels.popcounts(a)[left] + kernels.popcounts(b)[right]
    return np.divide(2 * inter, total, out=np.zeros(len(left)), where=total > 0)


def apply_tokens(
    found: Candidates,
    a: np.ndarray,
    b: np.ndarray,
    tokens_a: Tokens,
    tokens_b: Tokens,
    *,
    threshold: float,
    rule: TokenRule = "token",
) -> tuple[Candidates, TokenConflicts]:
    """Combine CLK candidates with keyed-token evidence, settling conflicts by ``rule``.

    Two kinds of conflict arise. Tokens agree (same NHS number, say) but the CLKs score below
    the threshold; or the CLKs score above it but the records hold different tokens in a field
    both have (and agree in none).

    ``"token"``: identifiers are trusted. Agreeing tokens make a candidate at score 1.0
    whatever the CLKs say, and pairs whose tokens differ are removed.
    ``"clk"``: similarity is trusted. Agreeing tokens make a candidate at 1.0 only when the
    CLKs are at least 0.5 similar (:data:`CLK_RULE_FLOOR`), and differing tokens remove
    nothing: for identifiers known to be mistyped or reused.

    Returns the candidates (in the documented order) and the conflict counts.

    Examples
    --------
    >>> a = np.array([[0b1111], [0b0011]], dtype=np.uint64)
    >>> found = dice_candidates(a, a, threshold=0.9)
    >>> tokens = {"nhs_number": ["x", "y"]}
    >>> kept, conflicts = apply_tokens(found, a, a, tokens, {"nhs_number": ["x", "z"]},
    ...                                threshold=0.9)
    >>> list(zip(kept.left.tolist(), kept.right.tolist())), conflicts.vetoed_by_token
    ([(0, 0)], 1)
    """
    if rule not in ("token", "clk"):
        raise MatchingInputError(f'token rule must be "token" or "clk", got {rule!r}')
    codes = _token_codes(tokens_a, tokens_b)
    left, right = exact_pairs(tokens_a, tokens_b)
    clk = _clk_scores(a, b, left, right)
    below = clk < threshold
    if rule == "token":
        linked = below
        add = np.ones(len(left), dtype=bool)
    else:
        add = clk >= CLK_RULE_FLOOR
        linked = below & add
    differ = np.zeros(len(found), dtype=bool)
    agree = np.zeros(len(found), dtype=bool)
    for code_a, code_b in codes:
        ca, cb = code_a[found.left], code_b[found.right]
        both = (ca >= 0) & (cb >= 0)
        differ |= both & (ca != cb)
        agree |= both & (ca == cb)
    differ &= ~agree
    vetoed = differ if rule == "token" else np.zeros(len(found), dtype=bool)
    kept = Candidates(
        left=found.left[~vetoed], right=found.right[~vetoed], score=found.score[~vetoed]
    )
    kept = with_exact(kept, left[add], right[add], n_right=len(b))
    conflicts = TokenConflicts(
        token_agrees_clk_below=int(below.sum()),
        linked_by_token=int(linked.sum()),
        token_differs_clk_above=int(differ.sum()),
        vetoed_by_token=int(vetoed.sum()),
    )
    return kept, conflicts
