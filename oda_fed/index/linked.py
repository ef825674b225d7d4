"""The persistent linked index: stable entity ids across linkage runs.

- The first build links every source in full (:func:`oda_fed.matching.link.link_with_quality`)
  and gives each entity a fresh random id.
- An update takes one source's new extract. Unchanged records (same record id and digest) keep
  their entity and are not matched again. New and changed records (the old version removed first)
  are the only ones scored, against the other sources' records in the index, and join an existing
  entity or form a new one (:mod:`oda_fed.index.incremental`). Records missing from the extract
  are removed; an entity id whose last record leaves is retired for good.
- A rebuild links everything again and gives each new entity the old id it overlaps most, so
  most ids survive; it reports how many records changed id.

Every call changes the file in one transaction: it is applied whole or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.encoding.evidence import Layout, evidence_layout
from oda_fed.encoding.fields import FieldEncoding
from oda_fed.errors import ConfigError, InputDataError
from oda_fed.index.extract import Extract, Records
from oda_fed.index.ids import carry_over, fresh_ids
from oda_fed.index.incremental import Placement, place
from oda_fed.index.reports import (
    IndexReport,
    IndexSummary,
    Relink,
    SourceUpdate,
    UpdateQuality,
    summarise,
)
from oda_fed.index.store import IndexStore, RecordRow, StoredSource, tokens_json
from oda_fed.matching.link import link_with_quality, quality_scores
from oda_fed.matching.link_fields import FieldScoring, estimate
from oda_fed.matching.probabilistic import Model, comparisons_for
from oda_fed.matching.quality import estimate_quality
from oda_fed.matching.settings import LinkSettings

Progress = Callable[[str], None]


class LinkedIndex:
    """A linked index file: entity ids that stay stable as sources send new extracts.

    Examples
    --------
    >>> settings = LinkSettings(threshold=0.8)
    >>> with LinkedIndex.open(path, fingerprint=fp, words=16, create=True) as index:  # doctest: +SKIP
    ...     index.link({"council": council, "police": police}, settings=settings)
    ...     later = index.link({"police": new_police}, settings=settings)
    >>> later.sources[0].new, later.sources[0].joined  # doctest: +SKIP
    (40, 31)
    """

    def __init__(self, store: IndexStore) -> None:
        self._store = store

    @classmethod
    def open(cls, path: Path, *, fingerprint: str, words: int, create: bool = False) -> LinkedIndex:
        """Open the index at ``path`` (``create``: make it when missing).

        Raises
        ------
        ProjectMismatchError
            The index was built under another project fingerprint or CLK width (the file is not
            changed).
        InputDataError
            The file is missing (without ``create``) or is not a linked index.
        """
        return cls(IndexStore.open(Path(path), fingerprint=fingerprint, words=words, create=create))

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> LinkedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def threshold(self) -> float | None:
        """The threshold of the last build or rebuild (what ``"auto"`` reuses in an update)."""
        value = self._store.meta().get("threshold")
        return None if value is None else float(value)

    def sources(self) -> list[str]:
        return self._store.sources()

    # --- changing the index ---------------------------------------------------------------------

    def link(
        self,
        extracts: Mapping[str, Extract],
        *,
        settings: LinkSettings,
        rebuild: bool = False,
        progress: Progress | None = None,
    ) -> IndexReport:
        """Build the index from ``extracts``, or update it with them, in one transaction.

        An empty index is built by a full link. Otherwise each source's extract updates it in
        turn, in the order given, so a later source's new records can join an earlier one's. With
        ``rebuild``, everything is linked again instead: new entities take the old id they share
        most records with, each old id going to at most one entity, so most ids survive; the rest
        get fresh ids, and old ids left over are retired. Rebuild to re-cluster after many
        updates, which never merge or split entities. Sources the index holds but ``extracts``
        leaves out keep their records.

        Parameters
        ----------
        extracts
            Source name to its current extract.
        settings
            The project's linkage settings. With ``threshold="auto"`` a build or rebuild estimates
            the threshold, and an update reuses the one the index was last built with.
        rebuild
            Link everything again and carry old ids over by largest overlap.
        progress
            Called with a short description of each step.

        Examples
        --------
        >>> report = index.link({"police": extract}, settings=settings)  # doctest: +SKIP
        >>> report.sources[0].scored  # doctest: +SKIP
        12
        """
        with self._store.transaction():
            if rebuild or self._store.n_records() == 0:
                action = "rebuild" if rebuild and self._store.n_records() else "build"
                return self._relink(extracts, settings=settings, progress=progress, action=action)
            scoring = self._scoring(settings)
            if scoring is None:
                value, note = self._update_threshold(settings.threshold)
            else:
                value = settings.match_probability
                note = (
                    f"candidates at CLK similarity {scoring.clk_threshold:.2f} or sharing a "
                    "token rule, scored with the match weights of the last build or rebuild"
                )
            done = [
                self._update_source(
                    source,
                    extract,
                    threshold=value,
                    settings=settings,
                    progress=progress,
                    scoring=scoring,
                )
                for source, extract in extracts.items()
            ]
            updates = tuple(u for u, _ in done)
            best = np.concatenate([np.empty(0)] + [q.best for _, q in done])
            runner_up = np.concatenate([np.empty(0)] + [q.runner_up for _, q in done])
            scored = sum(u.scored for u in updates)
            quality = None
            if scored:
                quality = UpdateQuality(
                    best_scores=best,
                    estimate=(
                        estimate_quality(best, runner_up=runner_up)
                        if scoring is None
                        else estimate(best, sum(q.expected for _, q in done))
                    ),
                    threshold=value,
                    scored=scored,
                    sampled=sum(q.sampled for _, q in done),
                    updates=updates,
                )
            return self._report(
                action="update",
                threshold=value,
                note=note,
                sources=updates,
                relink=None,
                quality=quality,
            )

    # --- reading ----------------------------------------------------------------------------------

    def entity_ids(self, source: str) -> dict[str, str]:
        """Record id to entity id for every record of ``source``."""
        stored = self._store.load_source(source)
        return dict(zip(stored.record_ids, stored.entity_ids, strict=True))

    def links(self, *, include_singletons: bool = False) -> pd.DataFrame:
        """One row per record in an entity with others: ``entity_id, source, record_id, score``.

        ``include_singletons`` adds records alone in their entity (empty score). Sorted by entity
        id, then source, then record id.
        """
        frame = pd.DataFrame(
            self._store.members(), columns=["entity_id", "source", "record_id", "score"]
        )
        frame["score"] = frame["score"].astype(np.float64).round(6)
        if not include_singletons:
            frame = frame[frame.groupby("entity_id")["entity_id"].transform("size") >= 2]
        return frame.reset_index(drop=True)

    def summary(self) -> IndexSummary:
        """Per-source record counts, entity counts, settings and the last updates."""
        return summarise(self._store)

    # --- internals ------------------------------------------------------------------------------

    def _update_threshold(self, threshold: float | str) -> tuple[float, str | None]:
        if threshold != "auto":
            return float(threshold), None
        if self.threshold is None:
            raise ConfigError(
                'threshold = "auto" needs a threshold from a full link, and this index has none '
                "(it was built from one source); run with --rebuild-index once two sources are in"
            )
        return self.threshold, (
            f'threshold "auto": reused {self.threshold:.2f}, chosen when the index was last built '
            "or rebuilt (an update scores too few records to estimate one)"
        )

    def _scoring(self, settings: LinkSettings) -> FieldScoring | None:
        """How an update scores, with ``method = "fields"``: the model of the last full link."""
        if settings.method != "fields":
            return None
        meta = self._store.meta()
        if meta.get("method") != "fields" or "model" not in meta:
            raise InputDataError(
                'the project links with method = "fields", but this linked index was built '
                "linking on CLKs and keeps no match weights: rebuild it from every source's "
                "current file (--rebuild-index)"
            )
        comparisons = comparisons_for([FieldEncoding(n, t) for n, t in settings.fields])
        clk = settings.threshold if settings.threshold != "auto" else meta["clk_threshold"]
        return FieldScoring(
            comparisons=tuple(comparisons),
            model=Model.from_json(meta["model"], comparisons),
            clk_threshold=float(clk),
            blocking=settings.blocking,
            one_per_source=settings.one_per_source,
            token_rule=settings.token_rule,
        )

    def _update_source(
        self,
        source: str,
        extract: Extract,
        *,
        threshold: float,
        settings: LinkSettings,
        progress: Progress | None,
        scoring: FieldScoring | None = None,
    ) -> tuple[SourceUpdate, _Scores]:
        """Apply one extract; also return its scored records' scores for the estimate."""
        store = self._store
        records = extract.normalised(source, words=store.words)
        layout = _layout(settings)
        if layout and records.evidence is None:
            raise InputDataError(_NO_EVIDENCE)
        stored = store.load_source(source)
        diff = _diff(stored, records)
        before = dict(zip(stored.record_ids, stored.entity_ids, strict=True))
        changed, new, removed = diff.changed, diff.new, diff.removed
        staying = [before[records.record_ids[i]] for i in diff.unchanged]

        # Old versions leave first, so a changed record is matched as if new.
        store.add_source(source)
        leaving = removed + [records.record_ids[i] for i in changed]
        store.delete_records(source, leaving)
        touched = {before[rid] for rid in leaving}
        emptied = {e for e, n in store.entity_sizes(touched).items() if n == 0}
        # A changed record that joins nothing keeps its entity id when it was alone in it: the
        # same record, corrected, stays the same entity.
        vacant: dict[int, str] = {}
        for i in changed:
            entity = before[records.record_ids[i]]
            if entity in emptied and entity not in vacant.values():
                vacant[i] = entity

        scored_rows = sorted(changed + new)
        if progress is not None:
            progress(f"matching {len(scored_rows)} new or changed records of {source}")
        # Nothing to score, nothing to load: an unchanged extract costs one read of its source.
        others = (
            [store.load_source(s, layout=layout) for s in store.sources() if s != source]
            if scored_rows
            else []
        )
        placement = place(
            records.subset(scored_rows),
            others,
            threshold=threshold,
            one_per_source=settings.one_per_source,
            taken=set(staying) if settings.one_per_source else set(),
            token_rule=settings.token_rule,
            blocking=settings.blocking,
            scoring=scoring,
        )

        entity_of: list[str | None] = list(placement.entity)
        joined = sum(e is not None for e in entity_of)
        kept = 0
        for k, i in enumerate(scored_rows):
            if entity_of[k] is None and i in vacant:
                entity_of[k] = vacant.pop(i)
                kept += 1
        lonely = [k for k, e in enumerate(entity_of) if e is None]
        fresh = fresh_ids(len(lonely), issued=store.issued_ids())
        for k, entity in zip(lonely, fresh, strict=True):
            entity_of[k] = entity
        store.issue(fresh)
        retired = emptied - {e for e in entity_of if e is not None}
        store.retire(sorted(retired))

        evidence = _evidence_rows(records.subset(scored_rows), layout)
        store.insert_records(
            RecordRow(
                source=source,
                record_id=records.record_ids[i],
                entity_id=str(entity_of[k]),
                score=None if np.isnan(placement.score[k]) else float(placement.score[k]),
                digest=records.digests[i],
                clk=records.clk_bytes(i),
                tokens=tokens_json(records.tokens, i),
                evidence=evidence[k],
            )
            for k, i in enumerate(scored_rows)
        )
        store.set_scores(_partner_scores(placement, others=others))
        store.clear_lone_scores(touched)
        counts = replace(
            diff.counts(source),
            scored=len(scored_rows),
            compared=placement.compared,
            candidates=placement.candidates,
            joined=joined,
            new_entities=len(fresh),
            kept=kept,
            retired=len(retired),
        )
        store.log("update", {"threshold": threshold, **asdict(counts)})
        scores = _Scores()
        if placement.best is not None:
            scores = _Scores(placement.best[placement.best > 0], sampled=len(scored_rows),
                             expected=placement.expected)  # fmt: skip
        elif scored_rows and others:
            best, runner_up, sampled = quality_scores(
                records.subset(scored_rows).clks,
                np.concatenate([o.clks for o in others]),
                sample=settings.quality_sample,
            )
            scores = _Scores(best, runner_up, sampled)
        return counts, scores

    def _relink(
        self,
        extracts: Mapping[str, Extract],
        *,
        settings: LinkSettings,
        progress: Progress | None,
        action: str,
    ) -> IndexReport:
        store = self._store
        words = store.words
        layout = _layout(settings)
        order = store.sources() + [s for s in extracts if s not in store.sources()]
        everything: list[Records] = []
        old: list[str | None] = []
        updates = []
        for source in order:
            stored = store.load_source(source, layout=layout if source not in extracts else ())
            if source in extracts:
                records = extracts[source].normalised(source, words=words)
                updates.append(_diff(stored, records).counts(source))
            else:
                records = _as_records(stored)
            before = dict(zip(stored.record_ids, stored.entity_ids, strict=True))
            old.extend(before.get(rid) for rid in records.record_ids)
            everything.append(records)

        lacking = [r.source for r in everything if layout and r.evidence is None]
        if lacking:
            raise InputDataError(
                'the project links with method = "fields", but the records of '
                f"{', '.join(lacking)} carry no field evidence (an index built linking on CLKs "
                "keeps none): rebuild from every source's current file, encoded with this project"
            )
        with_records = [r for r in everything if len(r)]
        outcome = None
        if len(with_records) >= 2:
            keyed = any(r.tokens for r in everything)
            outcome = link_with_quality(
                [r.clks for r in everything],
                settings=settings,
                tokens=[r.tokens for r in everything] if keyed else None,
                evidence=[r.evidence for r in everything] if layout else None,  # type: ignore[misc]
                progress=progress,
            )
            labels = np.concatenate(outcome.clustering.labels)
            scores = np.concatenate(outcome.clustering.scores)
        else:
            total = sum(len(r) for r in everything)
            labels, scores = np.arange(total), np.full(total, np.nan)

        if progress is not None:
            progress("carrying entity ids over")
        carried = carry_over(old, labels)
        clusters = np.unique(labels).tolist()
        issued = store.issued_ids()
        fresh = fresh_ids(sum(c not in carried for c in clusters), issued=issued)
        ids = dict(carried)
        ids.update(zip([c for c in clusters if c not in carried], fresh, strict=True))
        previously = store.active_ids()
        retired = previously - set(carried.values())

        store.delete_all_records()
        for source in order:
            store.add_source(source)
        store.issue(fresh)
        store.retire(sorted(retired))
        rows = []
        at = 0
        for records in everything:
            evidence = _evidence_rows(records, layout)
            for i in range(len(records)):
                score = scores[at + i]
                rows.append(
                    RecordRow(
                        source=records.source,
                        record_id=records.record_ids[i],
                        entity_id=ids[int(labels[at + i])],
                        score=None if np.isnan(score) else float(score),
                        digest=records.digests[i],
                        clk=records.clk_bytes(i),
                        tokens=tokens_json(records.tokens, i),
                        evidence=evidence[i],
                    )
                )
            at += len(records)
        store.insert_records(rows)
        chosen = None if outcome is None else outcome.threshold
        if chosen is not None:
            store.set_meta("threshold", repr(chosen))
            store.set_meta("method", settings.method)
        if outcome is not None and outcome.model is not None:
            store.set_meta("model", outcome.model.to_json())
            store.set_meta("clk_threshold", repr(outcome.clk_threshold))
        relink = Relink(
            outcome=outcome,
            sources=tuple(order),
            ids_kept=len(carried),
            ids_new=len(fresh),
            ids_retired=len(retired),
            records_moved=sum(
                e is not None and e != ids[int(label)] for e, label in zip(old, labels, strict=True)
            ),
        )
        store.log(
            action,
            {
                "threshold": chosen,
                "records": len(labels),
                "entities": len(clusters),
                "ids_kept": relink.ids_kept,
                "ids_new": relink.ids_new,
                "ids_retired": relink.ids_retired,
                "records_moved": relink.records_moved,
            },
        )
        note = None
        if settings.threshold == "auto" and chosen is not None:
            note = f'threshold "auto": estimated {chosen:.2f} from the scores of this full link'
        return self._report(
            action=action, threshold=chosen, note=note, sources=tuple(updates), relink=relink
        )

    def _report(
        self,
        *,
        action: str,
        threshold: float | None,
        note: str | None,
        sources: tuple[SourceUpdate, ...],
        relink: Relink | None,
        quality: UpdateQuality | None = None,
    ) -> IndexReport:
        summary = summarise(self._store, history=0)
        return IndexReport(
            action=action,
            threshold=threshold,
            note=note,
            sources=sources,
            relink=relink,
            entities=summary.entities,
            linked_entities=summary.linked_entities,
            quality=quality,
        )


@dataclass(frozen=True)
class _Diff:
    """A source's extract against the index: rows of the extract, record ids of the index."""

    unchanged: list[int]
    changed: list[int]
    new: list[int]
    removed: list[str]

    def counts(self, source: str) -> SourceUpdate:
        return SourceUpdate(
            source=source,
            unchanged=len(self.unchanged),
            new=len(self.new),
            changed=len(self.changed),
            removed=len(self.removed),
        )


def _diff(stored: StoredSource, records: Records) -> _Diff:
    """Which records of the extract are unchanged, changed (same id, new digest) or new, and
    which records of the index the extract no longer has."""
    digest = dict(zip(stored.record_ids, stored.digests, strict=True))
    unchanged, changed, new = [], [], []
    for i, rid in enumerate(records.record_ids):
        if rid not in digest:
            new.append(i)
        elif digest[rid] != records.digests[i]:
            changed.append(i)
        else:
            unchanged.append(i)
    present = set(records.record_ids)
    removed = [rid for rid in stored.record_ids if rid not in present]
    return _Diff(unchanged=unchanged, changed=changed, new=new, removed=removed)


def _as_records(stored: StoredSource) -> Records:
    return Records(
        source=stored.source,
        record_ids=stored.record_ids,
        clks=stored.clks,
        tokens=stored.tokens,
        digests=stored.digests,
        evidence=stored.evidence,
    )


_NO_EVIDENCE = (
    'the project links with method = "fields", but the records carry no field evidence: encode '
    "them with this project"
)


def _layout(settings: LinkSettings) -> Layout:
    """The evidence columns the index keeps per record: none unless the project links with
    ``method = "fields"``."""
    if settings.method != "fields":
        return []
    return evidence_layout([FieldEncoding(n, t) for n, t in settings.fields])


def _evidence_rows(records: Records, layout: Layout) -> list[bytes | None]:
    if not layout or records.evidence is None:
        return [None] * len(records)
    return records.evidence.rows(layout)


@dataclass(frozen=True)
class _Scores:
    """An update's scored records' scores for its estimate: the best and runner-up CLK scores
    of a sample, or (field-aware) the best match probabilities and the expected matches."""

    best: np.ndarray = field(default_factory=lambda: np.empty(0))
    runner_up: np.ndarray = field(default_factory=lambda: np.empty(0))
    sampled: int = 0
    expected: float = 0.0


def _partner_scores(
    placement: Placement, *, others: list[StoredSource]
) -> list[tuple[str, str, float]]:
    """A matched record that was alone takes the score of the edge that joined it (as in a full
    link, where a record's score is that of the first edge that touched it)."""
    out: dict[tuple[str, str], float] = {}
    for match, value in zip(placement.partner, placement.score, strict=True):
        if match is None:
            continue
        other = others[match[0]]
        if np.isnan(other.scores[match[1]]):
            key = (other.source, other.record_ids[match[1]])
            out[key] = max(out.get(key, -np.inf), float(value))
    return [(s, r, v) for (s, r), v in out.items()]
