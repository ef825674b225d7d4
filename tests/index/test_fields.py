"""A linked index under field-aware linkage (``method = "fields"``, the default): it keeps each
record's field evidence and the match weights of its last full link, and updates score new
records with them."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pytest

from oda_fed.encoding.evidence import linkage_layout
from oda_fed.errors import InputDataError
from oda_fed.index import Extract
from oda_fed.linkage import settings_for
from oda_fed.matching import link_fields
from oda_fed.matching.metrics import truth_quality
from oda_fed.matching.settings import LinkSettings

if TYPE_CHECKING:
    from conftest import Region  # only for annotations: conftest is not importable at run time


def fields(region: Region) -> LinkSettings:
    settings = settings_for(region.loaded.project.linkage)
    assert settings.method == "fields"  # the default, as the synthetic project leaves it
    return settings


def extract(region: Region, source: str, rows: slice | None = None) -> Extract:
    """``source``'s extract with its field evidence (the records at ``rows``)."""
    encoded = region.encoded[source]
    take = np.arange(len(encoded))[rows if rows is not None else slice(None)]
    return Extract(
        record_ids=[str(r) for r in encoded.record_ids[take]],
        clks=np.ascontiguousarray(encoded.clks[take]),
        evidence=encoded.evidence.take(take),
    )


def first(region: Region, share: float) -> dict[str, Extract]:
    return {
        s: extract(region, s, slice(0, int(len(region.encoded[s]) * share))) for s in region.encoded
    }


def everything(region: Region) -> dict[str, Extract]:
    return {s: extract(region, s) for s in region.encoded}


def ids(index) -> dict[tuple[str, str], str]:
    return {(s, r): e for s in index.sources() for r, e in index.entity_ids(s).items()}


def test_the_index_keeps_evidence_and_weights_and_an_update_scores_with_them(
    region: Region, tmp_path: Path, helpers: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fields(region)
    with region.open(tmp_path / "fields.index") as index:
        built = index.link(first(region, 0.8), settings=settings)
        assert built.relink is not None and built.relink.outcome.model is not None
        assert built.threshold == settings.match_probability
        before = ids(index)
        # What a node sent is what the index keeps, record by record.
        layout = linkage_layout(region.loaded.project.linkage)
        stored = index._store.load_source("police", layout=layout)
        sent = first(region, 0.8)["police"].evidence
        assert stored.evidence is not None
        for name in sent.filters:
            assert np.array_equal(stored.evidence.filters[name], sent.filters[name])
        for name in sent.tokens:
            assert np.array_equal(stored.evidence.tokens[name], sent.tokens[name])

        # An update never trains: it scores with the weights the build learnt.
        def no_training(*args: object, **kwargs: object) -> None:
            raise AssertionError("an update trained a model")

        monkeypatch.setattr(link_fields, "train_model", no_training)
        update = index.link(everything(region), settings=settings)
        monkeypatch.undo()
        after = ids(index)
        incremental = index.links(include_singletons=True)

    assert update.action == "update" and update.quality is not None
    assert update.note is not None and "match weights of the last build" in update.note
    assert {k: after[k] for k in before} == before  # every old record keeps its entity id
    joined = sum(u.joined for u in update.sources)
    assert joined > 0.5 * sum(u.new for u in update.sources)
    # The update's own estimate is of match probabilities, and says the placements are sound.
    precision, recall, _ = update.quality.estimate.at(settings.match_probability)
    assert precision >= 0.95 and recall >= 0.8

    with region.open(tmp_path / "full.index") as index:
        index.link(everything(region), settings=settings)
        full = index.links(include_singletons=True)
    quality = [truth_quality(m, region.truth) for m in (incremental, full)]
    assert abs(quality[0].f1 - quality[1].f1) <= 0.01, quality
    a, b = helpers.linked_pairs(incremental), helpers.linked_pairs(full)
    assert len(a ^ b) <= 0.02 * len(a | b)


def test_a_field_aware_index_links_better_than_a_clk_one_on_this_data(
    region: Region, tmp_path: Path
) -> None:
    settings = fields(region)
    found = {}
    for name, s in (("fields", settings), ("clk", replace(settings, method="clk"))):
        with region.open(tmp_path / f"{name}.index") as index:
            index.link(first(region, 0.8), settings=s)
            index.link(everything(region), settings=s)
            found[name] = truth_quality(index.links(include_singletons=True), region.truth).f1
    assert found["fields"] > found["clk"], found


def test_an_index_built_on_clks_is_refused_by_a_field_aware_update_and_left_as_it_was(
    region: Region, tmp_path: Path
) -> None:
    path = tmp_path / "clk.index"
    settings = fields(region)
    with region.open(path) as index:
        index.link(first(region, 0.8), settings=replace(settings, method="clk"))
    raw = path.read_bytes()
    with region.open(path) as index, pytest.raises(InputDataError, match="--rebuild-index"):
        index.link({"police": extract(region, "police")}, settings=settings)
    assert path.read_bytes() == raw
    # A rebuild from sources that lack evidence in the index names them, and changes nothing.
    with region.open(path) as index, pytest.raises(InputDataError, match="council, social_care"):
        index.link({"police": extract(region, "police")}, settings=settings, rebuild=True)
    assert path.read_bytes() == raw
    # From every source's current file it works, and updates then score with the weights.
    with region.open(path) as index:
        assert index.link(everything(region), settings=settings, rebuild=True).action == "rebuild"
        assert index.link(everything(region), settings=settings).action == "update"


def test_records_sent_without_evidence_are_refused(region: Region, tmp_path: Path) -> None:
    settings = fields(region)
    bare = {s: replace(e, evidence=None) for s, e in first(region, 0.5).items()}
    with region.open(tmp_path / "links.index") as index:
        with pytest.raises(InputDataError, match="no field evidence"):
            index.link(bare, settings=settings)
        index.link(first(region, 0.5), settings=settings)
        with pytest.raises(InputDataError, match="no field evidence"):
            index.link({"police": bare["police"]}, settings=settings)


def test_an_index_made_before_evidence_was_kept_opens_and_links_as_before(
    region: Region, tmp_path: Path
) -> None:
    path = tmp_path / "old.index"
    clk = replace(fields(region), method="clk")
    with region.open(path) as index:
        index.link(first(region, 0.8), settings=clk)
        before = index.links(include_singletons=True)
    with sqlite3.connect(path) as db:  # as an older oda-fed wrote it
        db.execute("ALTER TABLE records DROP COLUMN evidence")
    with region.open(path, create=False) as index:
        assert index.links(include_singletons=True).equals(before)
        report = index.link({"police": extract(region, "police")}, settings=clk)
    assert report.action == "update" and report.sources[0].new > 0
