"""What changing a linked index did, and what an index holds: the counts the CLI prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from oda_fed.index.store import IndexStore
from oda_fed.matching.link import LinkOutcome
from oda_fed.matching.quality import QualityEstimate


@dataclass(frozen=True)
class SourceUpdate:
    """What one source's extract changed in the index.

    ``unchanged``, ``new``, ``changed`` and ``removed`` compare the extract with the index. The
    rest describe the matching of an incremental update and are 0 after a build or rebuild:
    ``scored`` records (new + changed) were compared with ``compared`` records of other sources,
    giving ``candidates`` pairs; of the scored records, ``joined`` joined an existing entity,
    ``new_entities`` formed one with a fresh id, and ``kept`` (changed records that match no other
    entity and were alone in theirs) kept their entity id. ``retired`` entity ids were emptied.
    """

    source: str
    unchanged: int
    new: int
    changed: int
    removed: int
    scored: int = 0
    compared: int = 0
    candidates: int = 0
    joined: int = 0
    new_entities: int = 0
    kept: int = 0
    retired: int = 0


@dataclass(frozen=True)
class Relink:
    """A build or rebuild: everything linked in full, old ids carried over by largest overlap.

    Attributes
    ----------
    outcome : LinkOutcome or None
        The full link (None when fewer than two sources hold records: nothing to link).
    sources : tuple of str
        The sources in the order they were linked (``outcome``'s dataset order).
    ids_kept, ids_new, ids_retired : int
        Earlier entity ids still in use; fresh ids; earlier ids no longer in use.
    records_moved : int
        Records that were in the index before and now carry a different entity id.
    """

    outcome: LinkOutcome | None
    sources: tuple[str, ...]
    ids_kept: int
    ids_new: int
    ids_retired: int
    records_moved: int


@dataclass(frozen=True)
class UpdateQuality:
    """The quality estimate of an update, from its new and changed records alone.

    Each scored record's best and runner-up score against every record of the other sources (a
    seeded sample of them at most ``quality_sample``) is fitted as in a full link, so the report
    says how well this update's records are likely to have been placed. It has what the quality
    report needs: ``best_scores``, ``estimate``, ``threshold`` and :meth:`evidence`.

    Attributes
    ----------
    best_scores : numpy.ndarray
        Best scores of the sampled records that have any at or above the floor.
    estimate : QualityEstimate
    threshold : float
        The threshold the update used.
    scored, sampled : int
        New and changed records scored; those whose scores were fitted.
    """

    best_scores: np.ndarray
    estimate: QualityEstimate
    threshold: float
    scored: int
    sampled: int
    updates: tuple[SourceUpdate, ...] = ()

    def evidence(self, sources: Sequence[str]) -> dict[str, str]:
        """How the update was done, as short lines for the report: counts only."""
        lines = {
            "quality estimate": (
                f"best scores of {self.sampled:,} of the {self.scored:,} new and changed records, "
                "each against every record of the other sources"
            )
        }
        for u in self.updates:
            lines[u.source] = (
                f"{u.unchanged:,} unchanged, {u.new:,} new, {u.changed:,} changed, "
                f"{u.removed:,} removed; {u.joined:,} joined an existing entity, "
                f"{u.new_entities:,} new entities"
            )
        return lines


@dataclass(frozen=True)
class IndexReport:
    """The result of :meth:`LinkedIndex.link` (or its parts).

    Attributes
    ----------
    action : str
        ``"build"``, ``"update"`` or ``"rebuild"``.
    threshold : float or None
        The threshold used (None when nothing was linked).
    note : str or None
        How the threshold was chosen when the project says ``"auto"``.
    sources : tuple of SourceUpdate
    relink : Relink or None
        Set for a build or rebuild.
    entities, linked_entities : int
        Entities in the index afterwards, and those with records of two or more sources.
    quality : UpdateQuality or None
        Set for an update that scored any record.
    """

    action: str
    threshold: float | None
    note: str | None
    sources: tuple[SourceUpdate, ...]
    relink: Relink | None
    entities: int
    linked_entities: int
    quality: UpdateQuality | None = None

    def totals(self) -> SourceUpdate:
        """Every count summed over the sources (named ``"all"``)."""
        counts = {
            f.name: sum(getattr(u, f.name) for u in self.sources)
            for f in fields(SourceUpdate)
            if f.name != "source"
        }
        return SourceUpdate(source="all", **counts)


@dataclass(frozen=True)
class IndexSummary:
    """What ``oda-fed index show`` prints: per-source counts and the index's settings."""

    path: Path
    fingerprint: str
    bits: int
    threshold: float | None
    created: str
    updated: str
    sources: tuple[tuple[str, int, int], ...]  # (source, records, records in linked entities)
    entities: int
    linked_entities: int
    retired: int
    history: tuple[tuple[str, str, str], ...]  # (when, action, JSON detail), oldest first


def summarise(store: IndexStore, *, history: int = 5) -> IndexSummary:
    """Counts and settings of an open index (``history``: how many recent updates to list)."""
    meta = store.meta()
    per_source, entities, linked, retired = store.counts()
    sources = tuple((s, *per_source.get(s, (0, 0))) for s in store.sources())
    threshold = meta.get("threshold")
    return IndexSummary(
        path=store.path,
        fingerprint=meta["fingerprint"],
        bits=int(meta["words"]) * 64,
        threshold=None if threshold is None else float(threshold),
        created=meta["created"],
        updated=meta["updated"],
        sources=sources,
        entities=entities,
        linked_entities=linked,
        retired=retired,
        history=tuple(store.history(last=history)) if history else (),
    )


def describe_index(path: Path, *, history: int = 5) -> IndexSummary:
    """Summarise the index at ``path`` without changing it and without checking its project.

    Examples
    --------
    >>> summary = describe_index(Path("links.index"))  # doctest: +SKIP
    >>> summary.sources  # doctest: +SKIP
    (('council', 2105, 1420), ('police', 1632, 1210))
    """
    store = IndexStore.open_read_only(Path(path))
    try:
        return summarise(store, history=history)
    finally:
        store.close()
