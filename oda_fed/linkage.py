"""One linkage run: link sources afresh, or update a linked index, and return one typed result.

Embedded mode (``oda-fed link``), the coordinator's rounds and the benchmarks all call
:func:`run_linkage`. The project's ``[linkage]`` section becomes engine settings in one place,
:func:`settings_for`; nothing else reads it for matching.

- **Afresh** (no index): the sources are linked in full
  (:func:`oda_fed.matching.link.link_with_quality`) and every entity gets a new id.
- **Into a linked index** (:class:`IndexTarget`): the index is built, updated incrementally, or
  rebuilt (:class:`oda_fed.index.LinkedIndex`), and its entity ids stay stable from run to run.

Either way the result is a :class:`LinkResult`: every record's entity id and score, the threshold,
and the evidence the quality report is written from.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from oda_fed.config import Linkage
from oda_fed.errors import InputDataError
from oda_fed.index import Extract, IndexReport, LinkedIndex, UpdateQuality
from oda_fed.matching import Clustering, Quality
from oda_fed.matching.blocking import Blocking
from oda_fed.matching.executor import Executor
from oda_fed.matching.link import LinkOutcome, entities_by_partner_count, link_with_quality
from oda_fed.matching.metrics import truth_quality
from oda_fed.matching.settings import LinkSettings

__all__ = [
    "EntityIds",
    "IndexTarget",
    "LinkResult",
    "run_linkage",
    "settings_for",
]

Progress = Callable[[str], None]

#: How a fresh link names its entities: ``"numbered"`` (``e0000001``…, in resolution order, for
#: files) or ``"random"`` (opaque ids that say nothing of order or count, for federated rounds).
EntityIds = Literal["numbered", "random"]

MEMBER_COLUMNS = ["entity_id", "source", "record_id", "score"]


def settings_for(linkage: Linkage) -> LinkSettings:
    """The engine settings of a project's ``[linkage]`` section: the one translation.

    Examples
    --------
    >>> from oda_fed.config import load_project
    >>> project = load_project(Path("project.toml")).project  # doctest: +SKIP
    >>> settings_for(project.linkage).threshold  # doctest: +SKIP
    'auto'
    """
    b = linkage.blocking
    return LinkSettings(
        threshold=linkage.threshold,
        one_per_source=linkage.one_record_per_partner,
        token_rule=linkage.token_conflict,
        blocking=Blocking(
            method=b.method,
            lsh_above=b.lsh_above_pairs,
            bands=b.bands,
            bits_per_band=b.bits_per_band,
            target_recall=b.target_recall,
            min_threshold=b.min_threshold,
            max_block=b.max_block,
        ),
        quality_sample=linkage.quality_sample,
        method=linkage.method,
        match_probability=linkage.match_probability,
        fields=tuple((f.name, f.type) for f in linkage.fields),
    )


@dataclass(frozen=True)
class IndexTarget:
    """A linked index file to create or update, bound to the project it is kept under.

    Attributes
    ----------
    path : Path
        The index file; created when missing.
    fingerprint : str
        The project's fingerprint; an index made under another project is refused.
    words : int
        CLK width in 64-bit words (the project's ``wire_bits // 64``).
    rebuild : bool
        Link every record again, carrying earlier ids over by largest overlap.
    """

    path: Path
    fingerprint: str
    words: int
    rebuild: bool = False


@dataclass(frozen=True)
class LinkResult:
    """What a linkage run found: every record's entity, and the evidence behind it.

    Attributes
    ----------
    sources : tuple of str
        The sources given to this run (an index may hold more).
    members : pandas.DataFrame
        One row per record (for an index: every record it holds), columns ``entity_id, source,
        record_id, score``; ``score`` is the similarity of the edge that put the record in its
        entity, NaN for a record alone. Sorted by entity, then source, then record id.
    threshold : float or None
        The threshold used (None when nothing was linked).
    outcome : LinkOutcome, UpdateQuality or None
        The evidence the quality estimate was made from: a full link's outcome, an incremental
        update's estimate from its new and changed records, or None when nothing was scored.
    outcome_sources : tuple of str
        The sources in ``outcome``'s order.
    index_report : IndexReport or None
        What the run changed in the linked index; None for a link afresh.
    """

    sources: tuple[str, ...]
    members: pd.DataFrame
    threshold: float | None
    outcome: LinkOutcome | UpdateQuality | None
    outcome_sources: tuple[str, ...]
    index_report: IndexReport | None = None

    @property
    def entities(self) -> int:
        return int(self.members["entity_id"].nunique())

    def partners_per_entity(self) -> pd.Series:
        """For each entity id, how many sources know it."""
        return self.members.groupby("entity_id")["source"].nunique()

    @property
    def linked_entities(self) -> int:
        """Entities known to two or more sources."""
        return int((self.partners_per_entity() >= 2).sum())

    def entities_by_partner_count(self) -> dict[int, int]:
        """How many entities are known to 1, 2, … sources."""
        return entities_by_partner_count(self.partners_per_entity())

    def links(self, *, include_singletons: bool = False) -> pd.DataFrame:
        """``links.csv``: one row per record in an entity with others (all records with
        ``include_singletons``), columns ``entity_id, source, record_id, score``."""
        if include_singletons:
            return self.members.copy()
        size = self.members.groupby("entity_id")["entity_id"].transform("size")
        return self.members[size >= 2].reset_index(drop=True)

    def assignments(
        self, source: str, record_ids: Sequence[object]
    ) -> tuple[list[str], list[float | None]]:
        """Entity id and score of each of ``record_ids`` of ``source``, in that order."""
        own = self.members[self.members.source == source].set_index("record_id")
        own = own.reindex(pd.Index(record_ids, dtype=own.index.dtype))
        if own["entity_id"].isna().any():
            raise InputDataError(f"source '{source}': a record id has no entity in this result")
        scores = [None if pd.isna(s) else float(s) for s in own["score"].tolist()]
        return own["entity_id"].tolist(), scores

    def quality(self, truth: pd.DataFrame) -> Quality:
        """Pairwise precision and recall against a truth table (``source, record_id,
        person_id``)."""
        return truth_quality(self.members, truth)

    def estimated(self) -> tuple[float, float] | None:
        """Estimated precision and recall at the threshold used, when an estimate was made."""
        if self.outcome is None or self.outcome.estimate.reason is not None:
            return None
        p, r, _ = self.outcome.estimate.at(self.outcome.threshold)
        return p, r

    def degenerate(self) -> list[str]:
        """Why this linkage cannot be trusted (:mod:`oda_fed.matching.guard`): the automatic
        threshold at its floor, no separation between matches and non-matches, or two sources
        that share almost no entities. Empty when nothing says so, or nothing was scored."""
        if not isinstance(self.outcome, LinkOutcome):
            return []
        return self.outcome.degenerate(list(self.outcome_sources))

    def summary(self) -> str:
        """One line on what was found: entities, the threshold and the estimated quality; for
        an index, what the run changed. The coordinator's round message.

        Examples
        --------
        >>> result.summary()  # doctest: +SKIP
        '2882 entities, 1993 known to two or more partners; threshold 0.85, estimated ...'
        """
        head = f"{self.entities} entities, {self.linked_entities} known to two or more partners; "
        figures = self._figures()
        degenerate = self.degenerate()
        if degenerate:
            figures += "; DEGENERATE FIT, do not trust these entities: " + "; ".join(degenerate)
        report = self.index_report
        if report is None:
            return head + figures
        if report.relink is not None and report.relink.outcome is not None:
            return f"{head}{figures}; linked index {report.action}: entity ids stay stable in later rounds"
        text = head + _incremental(report)
        return text + (f"; this update's records: {figures}" if self.outcome is not None else "")

    def _figures(self) -> str:
        if self.outcome is None:
            return "nothing was scored"
        threshold = f"threshold {self.outcome.threshold:.2f}"
        estimated = self.estimated()
        if estimated is None:
            return f"{threshold}, no quality estimate ({self.outcome.estimate.reason})"
        return f"{threshold}, estimated precision {estimated[0]:.3f}, recall {estimated[1]:.3f}"

    def write_quality_report(
        self,
        out_dir: Path,
        *,
        title: str,
        truth: Mapping[str, float] | None = None,
        internal: bool = False,
    ) -> dict[str, Path] | None:
        """Write the quality report (``quality.html`` and its charts) into ``out_dir``;
        ``internal`` marks it as the coordinator's, never to be sent to a partner.

        Returns the paths written, or None when nothing was scored (no report to write).
        """
        if self.outcome is None:
            return None
        from oda_fed.products.quality_report import write_quality_report

        return write_quality_report(
            out_dir=out_dir,
            title=title,
            scores=self.outcome.best_scores,
            estimate=self.outcome.estimate,
            chosen_threshold=self.outcome.threshold,
            block_stats=self.outcome.evidence(list(self.outcome_sources)),
            entities_by_partner_count=self.entities_by_partner_count(),
            truth=truth,
            internal=internal,
            model=getattr(self.outcome, "model", None),
            degenerate=self.degenerate(),
        )


def _incremental(report: IndexReport) -> str:
    """What an incremental index update changed, in one clause."""
    t = report.totals()
    threshold = "" if report.threshold is None else f" at threshold {report.threshold:.2f}"
    return (
        f"linked index updated incrementally{threshold}: {t.unchanged} unchanged records "
        f"kept their entity ids; {t.new} new and {t.changed} changed records were "
        f"matched ({t.joined} joined an existing entity, {t.new_entities} formed "
        f"new ones); {t.removed} records no longer sent were removed"
    )


def run_linkage(
    extracts: Mapping[str, Extract],
    *,
    settings: LinkSettings,
    index: IndexTarget | None = None,
    entity_ids: EntityIds = "random",
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> LinkResult:
    """Link ``extracts`` (source name to records) afresh, or into the linked index ``index``.

    ``executor`` runs a fresh link's candidate work (:mod:`oda_fed.matching.executor`; default:
    in this process). An update of a linked index runs in this process.

    Raises
    ------
    InputDataError
        Fewer than two sources to link (counting those an index already holds), or an extract
        whose lengths disagree or whose record ids repeat.
    ProjectMismatchError
        ``index`` was made under another project or CLK width; it is left as it was.
    MatchingInputError
        The settings cannot be met (a threshold that passes too many pairs, say).

    Examples
    --------
    >>> result = run_linkage({"council": council, "police": police},
    ...                      settings=LinkSettings(threshold=0.8))  # doctest: +SKIP
    >>> result.links().columns.tolist()  # doctest: +SKIP
    ['entity_id', 'source', 'record_id', 'score']
    """
    if index is None:
        return _afresh(extracts, settings=settings, entity_ids=entity_ids, progress=progress,
                       executor=executor)  # fmt: skip
    return _into_index(extracts, settings=settings, index=index, progress=progress)


def _afresh(
    extracts: Mapping[str, Extract],
    *,
    settings: LinkSettings,
    entity_ids: EntityIds,
    progress: Progress | None,
    executor: Executor | None = None,
) -> LinkResult:
    if len(extracts) < 2:
        raise InputDataError("linkage needs at least two sources")
    names = list(extracts)
    for name, extract in extracts.items():
        if len(extract.record_ids) != len(extract.clks):
            raise InputDataError(
                f"source '{name}': {len(extract.record_ids)} record ids but "
                f"{len(extract.clks)} CLKs"
            )
    keyed = any(e.tokens for e in extracts.values())
    evidence = [e.evidence for e in extracts.values()]
    outcome = link_with_quality(
        [e.clks for e in extracts.values()],
        settings=settings,
        tokens=[e.tokens or {} for e in extracts.values()] if keyed else None,
        evidence=None if any(e is None for e in evidence) else evidence,  # type: ignore[arg-type]
        progress=progress,
        executor=executor,
    )
    clustering = outcome.clustering
    return LinkResult(
        sources=tuple(names),
        members=_members(names, extracts, clustering, entity_ids=entity_ids),
        threshold=outcome.threshold,
        outcome=outcome,
        outcome_sources=tuple(names),
    )


def _members(
    names: list[str],
    extracts: Mapping[str, Extract],
    clustering: Clustering,
    *,
    entity_ids: EntityIds,
) -> pd.DataFrame:
    """Every record's entity, sorted by entity, source and record id, with the entity ids named."""
    sizes = [len(x) for x in clustering.labels]
    label = np.concatenate(clustering.labels)
    source = np.repeat(np.argsort(np.argsort(np.array(names, dtype=object))), sizes)
    record_ids = np.concatenate([np.asarray(e.record_ids, dtype=object) for e in extracts.values()])
    position = np.concatenate([np.arange(n) for n in sizes])
    # Numbers sort fast; record ids (strings) only break ties, which one record per source rules
    # out, so they are sorted only when an entity holds two records of one source.
    order = np.lexsort((position, source, label))
    key = label[order] * len(names) + source[order]
    if len(key) > 1 and np.any(key[1:] == key[:-1]):
        frame = pd.DataFrame({"label": label, "source": source, "record_id": record_ids})
        order = frame.sort_values(["label", "source", "record_id"], kind="stable").index.to_numpy()
    ids = _entity_ids(clustering.n_entities, entity_ids)
    # Built from arrays whose types are known, so pandas need not look at millions of strings.
    return pd.DataFrame(
        {
            "entity_id": pd.Series(ids[label[order]], dtype=object, copy=False),
            "source": pd.Categorical.from_codes(
                np.repeat(np.arange(len(names)), sizes)[order], categories=names
            ),
            "record_id": pd.Series(record_ids[order], dtype=object, copy=False),
            "score": np.round(np.concatenate(clustering.scores)[order], 6),
        }
    )


def _entity_ids(n: int, how: EntityIds) -> np.ndarray:
    if how == "numbered":
        return np.array([f"e{i + 1:07d}" for i in range(n)], dtype=object)
    while True:  # 64 random bits each; drawn again in the unlikely event two collide
        text = secrets.token_bytes(8 * n).hex()
        ids = np.array([text[i : i + 16] for i in range(0, 16 * n, 16)], dtype=object)
        if len(set(ids.tolist())) == n:
            return ids


def _into_index(
    extracts: Mapping[str, Extract],
    *,
    settings: LinkSettings,
    index: IndexTarget,
    progress: Progress | None,
) -> LinkResult:
    # Refused before the file is made, so too few sources leave no empty index behind.
    if not Path(index.path).exists() and len(extracts) < 2:
        raise InputDataError(_TOO_FEW)
    with LinkedIndex.open(
        index.path, fingerprint=index.fingerprint, words=index.words, create=True
    ) as linked:
        if len(set(linked.sources()) | set(extracts)) < 2:
            raise InputDataError(_TOO_FEW)
        report = linked.link(extracts, settings=settings, rebuild=index.rebuild, progress=progress)
        members = linked.links(include_singletons=True)
    outcome: LinkOutcome | UpdateQuality | None = report.quality
    outcome_sources = tuple(u.source for u in report.sources)
    if report.relink is not None:
        outcome, outcome_sources = report.relink.outcome, report.relink.sources
    return LinkResult(
        sources=tuple(extracts),
        members=members.sort_values(MEMBER_COLUMNS[:3], kind="stable").reset_index(drop=True),
        threshold=report.threshold,
        outcome=outcome,
        outcome_sources=outcome_sources,
        index_report=report,
    )


_TOO_FEW = (
    "a linked index needs at least two sources: give at least two files to build one (one is "
    "enough to update an index that holds other sources)"
)
