"""Place one source's new and changed records among the entities an index already holds.

Only the records given are scored, against every record of the other sources. Edges are taken
greedily by score; a record joins the entity of the record it matched unless that entity already
holds a record of this source (one record per partner). Records that join nothing form entities
of their own. Existing entities are never merged or split here: that is what keeps their ids
stable. A full relink (:meth:`oda_fed.index.LinkedIndex.rebuild`) is the way to re-cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oda_fed.errors import ConfigError
from oda_fed.index.extract import Records
from oda_fed.index.store import StoredSource
from oda_fed.matching import Candidates, dice_candidates
from oda_fed.matching.blocking import Blocking, blocked_candidates
from oda_fed.matching.link import TokenRule, apply_tokens
from oda_fed.matching.link_fields import FieldScoring
from oda_fed.matching.probabilistic import scored


@dataclass(frozen=True)
class Placement:
    """Where each scored record went.

    Attributes
    ----------
    entity : list of (str or None)
        Per scored record, the existing entity it joined, or None when it joined none.
    score : numpy.ndarray
        ``float64``: the score of the edge that placed it; NaN when it joined none.
    partner : list of (tuple of int, int or None)
        Per scored record, ``(other source position, row)`` of the record it matched.
    candidates : int
        Candidate pairs found (at or above the threshold, token matches included).
    compared : int
        Records of the other sources the scored records were compared with.
    """

    entity: list[str | None]
    score: np.ndarray
    partner: list[tuple[int, int] | None]
    candidates: int
    compared: int
    #: With field-aware scoring: each scored record's best match probability in each other
    #: source (0 without a candidate), and the matches the scored records are expected to have.
    best: np.ndarray | None = None
    expected: float = 0.0


def place(
    records: Records,
    others: Sequence[StoredSource],
    *,
    threshold: float,
    one_per_source: bool,
    taken: set[str],
    token_rule: TokenRule = "token",
    blocking: Blocking | None = None,
    scoring: FieldScoring | None = None,
) -> Placement:
    """Match ``records`` against ``others`` and choose, greedily by score, an entity for each.

    Parameters
    ----------
    records
        The new and changed records of one source (the only ones scored).
    others
        Every other source's records in the index.
    threshold
        Dice score a pair must reach (a keyed-token agreement scores 1.0); with ``scoring``,
        the match probability.
    one_per_source
        Refuse to join an entity that already holds a record of this source.
    taken
        Entity ids that already hold a record of this source (its unchanged records).
    token_rule
        How keyed tokens and CLKs settle a conflict (:func:`oda_fed.matching.link.apply_tokens`).
    blocking
        When to block with LSH instead of scoring all pairs, as in a full link; None never blocks.
    scoring
        Field-aware linkage (``method = "fields"``): candidates and match probabilities as a full
        link finds them, with the model it trained; ``records`` and ``others`` carry evidence.

    Returns
    -------
    Placement

    Examples
    --------
    >>> from oda_fed.index.extract import Extract
    >>> clk = np.array([[0b1111]], dtype=np.uint64)
    >>> mine = Extract(record_ids=["x"], clks=clk).normalised("police")
    >>> theirs = StoredSource(source="council", record_ids=["c1"], entity_ids=["e1"],
    ...                       scores=np.array([np.nan]), digests=["-"], clks=clk.copy(), tokens={})
    >>> place(mine, [theirs], threshold=0.8, one_per_source=True, taken=set()).entity
    ['e1']
    """
    edges_score, edges_new, edges_source, edges_row = [], [], [], []
    best, expected = [], 0.0
    for position, other in enumerate(others):
        if not len(other) or not len(records):
            continue
        if scoring is not None:
            found, counted = _scored(records, other, scoring)
            best.append(np.zeros(len(records)))
            np.maximum.at(best[-1], found.left, found.score)
            expected += counted
            found = scored(found, found.score, threshold)
        else:
            found = _candidates(records.clks, other.clks, threshold=threshold, blocking=blocking)
        if scoring is None and records.tokens and other.tokens:
            # The same rule as a full link, so that an update settles a conflict between keyed
            # tokens and CLKs the way a rebuild would.
            found, _ = apply_tokens(
                found,
                records.clks,
                other.clks,
                records.tokens,
                other.tokens,
                threshold=threshold,
                rule=token_rule,
            )
        edges_score.append(found.score)
        edges_new.append(found.left)
        edges_source.append(np.full(len(found), position, dtype=np.int64))
        edges_row.append(found.right)
    score = np.concatenate([np.empty(0), *edges_score])
    new = np.concatenate([np.empty(0, np.int64), *edges_new])
    source = np.concatenate([np.empty(0, np.int64), *edges_source])
    row = np.concatenate([np.empty(0, np.int64), *edges_row])
    # One documented order: score descending, then the scored record, the source, the row.
    order = np.lexsort((row, source, new, -score))

    entity: list[str | None] = [None] * len(records)
    placed_score = np.full(len(records), np.nan)
    partner: list[tuple[int, int] | None] = [None] * len(records)
    held = set(taken)
    for e in order:
        i = int(new[e])
        if entity[i] is not None:
            continue
        target = others[int(source[e])].entity_ids[int(row[e])]
        if one_per_source and target in held:
            continue
        entity[i] = target
        placed_score[i] = score[e]
        partner[i] = (int(source[e]), int(row[e]))
        held.add(target)
    return Placement(
        entity=entity,
        score=placed_score,
        partner=partner,
        candidates=int(score.shape[0]),
        compared=sum(len(o) for o in others),
        best=np.concatenate([np.empty(0), *best]) if scoring is not None else None,
        expected=expected,
    )


def _scored(
    records: Records, other: StoredSource, scoring: FieldScoring
) -> tuple[Candidates, float]:
    """The records' candidates in ``other`` with match probabilities, and how many matches they
    are expected to have there: the model's count or the candidates', the larger (as a full
    link estimates)."""
    if records.evidence is None or other.evidence is None:
        raise ConfigError(
            'the project links with method = "fields", but the linked index holds records of '
            f"'{other.source}' without field evidence (it was built linking on CLKs): rebuild it "
            "from every source's current file (--rebuild-index)"
        )
    both = records.tokens and other.tokens
    found, _, _ = scoring.score((records.clks, other.clks), (records.evidence, other.evidence),
                             (records.tokens, other.tokens) if both else None,
                             views=(0,))  # fmt: skip
    per_record = np.bincount(found.left, weights=found.score, minlength=len(records))
    model_count = scoring.model.prior * len(records) * len(other)
    return found, max(float(np.minimum(per_record, 1.0).sum()), model_count)


def _candidates(
    a: np.ndarray, b: np.ndarray, *, threshold: float, blocking: Blocking | None
) -> Candidates:
    """Pairs of ``a`` and ``b`` at ``threshold``: all pairs, or LSH blocks where ``blocking`` says."""
    if blocking is not None and blocking.uses_lsh(len(a), len(b)):
        found, _ = blocked_candidates(
            a,
            b,
            threshold=threshold,
            params=blocking.params_for(a, b, threshold=threshold),
            max_block=blocking.max_block,
        )
        return found
    return dice_candidates(a, b, threshold=threshold)
