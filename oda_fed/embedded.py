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
from oda_fed.matching import Clustering, Quality, pairwise_quality
from oda_fed.matching.link import LinkOutcome, link_with_quality, partners_per_entity
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
        counts = partners_per_entity(self.clustering)
        values, freq = np.unique(counts, return_counts=True)
        return {int(v): int(f) for v, f in zip(values, freq, strict=True)}

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
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) != len(stems):
        raise InputDataError(
            "input files must have different names; the name identifies the source"
        )
    encoded_sources = []
    clks = []
    for path, stem in zip(paths, stems, strict=True):
        if progress is not None:
            progress(f"standardising and encoding {Path(path).name}")
        encoded = encode_file(
            Path(path),
            project=project,
            layout=replace(layout_for(project, stem), on_invalid=on_invalid),
            secret=secret,
        )
        encoded_sources.append(encoded)
        clks.append(encoded.clks)
    keyed = any(f.keyed_token for f in project.linkage.fields)
    outcome = link_with_quality(
        clks,
        threshold=project.linkage.threshold,
        one_per_source=project.linkage.one_record_per_partner,
        tokens=[e.tokens for e in encoded_sources] if keyed else None,
        progress=progress,
    )
    return LinkResult(
        sources=stems, encoded=encoded_sources, clustering=outcome.clustering, outcome=outcome
    )
