"""Embedded mode: every role in one process, no network, for trying oda-fed on files.

The same library pieces run as in a federated round (standardise, encode, match, resolve), so the
results agree with what the coordinator would find for the same inputs and settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.config import Project
from oda_fed.errors import InputDataError
from oda_fed.index import Extract, IndexReport, LinkedIndex
from oda_fed.matching import Clustering, Quality, pairwise_quality
from oda_fed.matching.link import (
    LinkOutcome,
    entities_by_partner_count,
    link_with_quality,
    partners_per_entity,
)
from oda_fed.node.encode import EncodedSource, encode_file
from oda_fed.node.sources import layout_for

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LinkResult:
    """Entities found across the sources, with each record's entity id and joining score."""

    sources: list[str]
    encoded: list[EncodedSource]
    clustering: Clustering
    outcome: LinkOutcome

    def entity_id(self, index: int) -> str:
        return f"e{index + 1:07d}"

    def links(self, *, include_singletons: bool = False) -> pd.DataFrame:
        """One row per linked record: ``entity_id, source, record_id, score``."""
        frames = []
        sizes = np.zeros(self.clustering.n_entities, dtype=np.int64)
        for labels in self.clustering.labels:
            np.add.at(sizes, labels, 1)
        for source, prep, labels, scores in zip(
            self.sources, self.encoded, self.clustering.labels, self.clustering.scores, strict=True
        ):
            keep = np.ones(len(labels), dtype=bool) if include_singletons else sizes[labels] >= 2
            frames.append(
                pd.DataFrame(
                    {
                        "entity_index": labels[keep],
                        "source": source,
                        "record_id": prep.record_ids[keep],
                        "score": np.round(scores[keep], 6),
                    }
                )
            )
        out = pd.concat(frames, ignore_index=True).sort_values(
            ["entity_index", "source", "record_id"], kind="stable"
        )
        out.insert(0, "entity_id", [self.entity_id(i) for i in out.pop("entity_index")])
        return out.reset_index(drop=True)

    def entities_by_partner_count(self) -> dict[int, int]:
        """How many entities are known to 1, 2, … sources."""
        return entities_by_partner_count(partners_per_entity(self.clustering))

    def quality(self, truth: pd.DataFrame) -> Quality:
        """Pairwise precision and recall against a truth table (``source, record_id, person_id``)."""
        missing = {"source", "record_id", "person_id"} - set(truth.columns)
        if missing:
            raise InputDataError(f"truth file lacks column(s) {', '.join(sorted(missing))}")
        person = {
            (s, str(r)): str(p)
            for s, r, p in truth[["source", "record_id", "person_id"]].itertuples(index=False)
        }
        codes: dict[str, int] = {}
        true_labels = []
        for source, prep in zip(self.sources, self.encoded, strict=True):
            ids = []
            for record in prep.record_ids:
                key = person.get((source, str(record)))
                if key is None:
                    raise InputDataError(f"truth has no person for record '{record}' of '{source}'")
                ids.append(codes.setdefault(key, len(codes)))
            true_labels.append(np.asarray(ids, dtype=np.int64))
        return pairwise_quality(self.clustering.labels, true_labels)


def link_files(
    paths: Sequence[Path],
    *,
    project: Project,
    secret: bytes,
    on_invalid: str = "error",
    progress: Progress | None = None,
) -> LinkResult:
    """Link the records of several CSV files.

    A file's stem names its source. When the stem is a partner id in the project, that partner's
    agreed column layout applies; otherwise columns must be named after the project's fields, and
    the record id column is ``record_id``. ``on_invalid`` is ``"error"`` (stop at the first malformed
    value, naming its row and column) or ``"missing"`` (count malformed values as missing).
    """
    stems, encoded_sources = _encode_files(
        paths, project=project, secret=secret, on_invalid=on_invalid, progress=progress
    )
    keyed = any(f.keyed_token for f in project.linkage.fields)
    outcome = link_with_quality(
        [e.clks for e in encoded_sources],
        tokens=[e.tokens for e in encoded_sources] if keyed else None,
        progress=progress,
        **project.linkage.link_options(),
    )
    return LinkResult(
        sources=stems, encoded=encoded_sources, clustering=outcome.clustering, outcome=outcome
    )


def _encode_files(
    paths: Sequence[Path],
    *,
    project: Project,
    secret: bytes,
    on_invalid: str,
    progress: Progress | None,
) -> tuple[list[str], list[EncodedSource]]:
    """Each file's source name (its stem) and its records encoded with its partner's layout."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) != len(stems):
        raise InputDataError(
            "input files must have different names; the name identifies the source"
        )
    encoded_sources = []
    for path, stem in zip(paths, stems, strict=True):
        if progress is not None:
            progress(f"standardising and encoding {Path(path).name}")
        encoded_sources.append(
            encode_file(
                Path(path),
                project=project,
                layout=replace(layout_for(project, stem), on_invalid=on_invalid),
                secret=secret,
            )
        )
    return stems, encoded_sources


@dataclass(frozen=True)
class IndexedLinkResult:
    """What :func:`link_files_to_index` did to the index, and the index's entities afterwards.

    Attributes
    ----------
    sources : list of str
        The sources of the files given (the index may hold more).
    report : IndexReport
        Counts of the build, update or rebuild.
    members : pandas.DataFrame
        Every record in the index: ``entity_id, source, record_id, score``.
    """

    sources: list[str]
    report: IndexReport
    members: pd.DataFrame

    def links(self, *, include_singletons: bool = False) -> pd.DataFrame:
        """One row per record of the index in an entity with others, by stable entity id."""
        if include_singletons:
            return self.members.copy()
        size = self.members.groupby("entity_id")["entity_id"].transform("size")
        return self.members[size >= 2].reset_index(drop=True)

    def entities_by_partner_count(self) -> dict[int, int]:
        """How many of the index's entities are known to 1, 2, … sources."""
        return entities_by_partner_count(self.members.groupby("entity_id")["source"].nunique())

    def quality(self, truth: pd.DataFrame) -> Quality:
        """Pairwise precision and recall of the whole index against a truth table."""
        missing = {"source", "record_id", "person_id"} - set(truth.columns)
        if missing:
            raise InputDataError(f"truth file lacks column(s) {', '.join(sorted(missing))}")
        merged = self.members.merge(
            truth[["source", "record_id", "person_id"]].astype(str),
            on=["source", "record_id"],
            how="left",
        )
        if merged["person_id"].isna().any():
            first = merged[merged["person_id"].isna()].iloc[0]
            raise InputDataError(
                f"truth has no person for record '{first.record_id}' of '{first.source}'"
            )
        entity = merged["entity_id"].astype("category").cat.codes.to_numpy(np.int64)
        person = merged["person_id"].astype("category").cat.codes.to_numpy(np.int64)
        groups = [merged["source"] == s for s in merged["source"].unique()]
        return pairwise_quality([entity[g] for g in groups], [person[g] for g in groups])


def link_files_to_index(
    paths: Sequence[Path],
    *,
    project: Project,
    fingerprint: str,
    secret: bytes,
    index: Path,
    rebuild: bool = False,
    on_invalid: str = "error",
    progress: Progress | None = None,
) -> IndexedLinkResult:
    """Link CSV files into a linked index file, creating it or updating it in one transaction.

    A new index is built by linking every file in full. An existing one is updated source by
    source, in the order given: unchanged records keep their entity ids and are not matched
    again, new and changed records are matched against the other sources' records, and records
    missing from a file are removed (see :class:`oda_fed.index.LinkedIndex`). ``rebuild`` links
    everything again, carrying old entity ids over by largest overlap. Sources the index holds but
    ``paths`` leaves out keep their records. Files are read as by :func:`link_files`.

    Raises
    ------
    ProjectMismatchError
        The index was built under another project (checked before any file is read).
    InputDataError
        As :func:`link_files`, or a new index would hold fewer than two sources.

    Examples
    --------
    >>> result = link_files_to_index([Path("council.csv"), Path("police.csv")], project=project,
    ...     fingerprint=loaded.fingerprint, secret=secret, index=Path("links.index"))  # doctest: +SKIP
    >>> result.report.action  # doctest: +SKIP
    'build'
    """
    words = project.linkage.wire_bits // 64
    index = Path(index)
    # An existing index is checked before the files are read, so a wrong one fails fast; a new
    # one is only created once every file has been read, so bad input leaves no file behind.
    linked = (
        LinkedIndex.open(index, fingerprint=fingerprint, words=words) if index.exists() else None
    )
    try:
        stems, encoded = _encode_files(
            paths, project=project, secret=secret, on_invalid=on_invalid, progress=progress
        )
        held = set(linked.sources()) if linked is not None else set()
        if len(held | set(stems)) < 2:
            raise InputDataError(
                "give at least two CSV files to build a linked index (one is enough to update "
                "an index that holds other sources)"
            )
        if linked is None:
            linked = LinkedIndex.open(index, fingerprint=fingerprint, words=words, create=True)
        report = linked.link(
            {stem: Extract.from_encoded(e) for stem, e in zip(stems, encoded, strict=True)},
            rebuild=rebuild,
            progress=progress,
            **project.linkage.link_options(),
        )
        members = linked.links(include_singletons=True)
    finally:
        if linked is not None:
            linked.close()
    return IndexedLinkResult(sources=stems, report=report, members=members)
