"""Incremental updates of a linked index on real CLKs: stable ids, only new records matched."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pytest

from oda_fed.errors import ConfigError
from oda_fed.index import Extract, LinkedIndex
from oda_fed.index import incremental as incremental_module
from oda_fed.index.store import IndexStore
from oda_fed.matching.settings import LinkSettings

if TYPE_CHECKING:
    from conftest import Region  # only for annotations: conftest is not importable at run time

SOURCES = ("council", "police", "social_care")


def all_ids(index: LinkedIndex) -> dict[tuple[str, str], str]:
    return {(s, r): e for s in index.sources() for r, e in index.entity_ids(s).items()}


def issued(index: LinkedIndex) -> set[str]:
    return index._store.issued_ids()


def test_ids_stay_stable_when_a_partner_adds_records(region: Region, tmp_path: Path) -> None:
    with region.open(tmp_path / "links.index") as index:
        built = index.link(region.first(0.8), settings=region.settings)
        assert built.action == "build" and built.relink is not None
        before = all_ids(index)
        ever = issued(index)

        report = index.link({"police": region.extract("police")}, settings=region.settings)
        after = all_ids(index)

    assert report.action == "update"
    (police,) = report.sources
    n_all, n_old = len(region.encoded["police"]), int(len(region.encoded["police"]) * 0.8)
    assert (police.unchanged, police.new, police.changed, police.removed) == (
        n_old,
        n_all - n_old,
        0,
        0,
    )
    assert police.scored == police.new
    assert police.joined + police.new_entities == police.new
    assert police.joined > 0 and police.new_entities > 0
    # Every record that was there keeps its entity id, in every source.
    assert {k: after[k] for k in before} == before
    added = {after[k] for k in after if k not in before}
    fresh = added - set(before.values())
    assert len(fresh) == police.new_entities
    assert not fresh & ever  # new entities take ids never issued before


def test_only_new_and_changed_records_are_scored(
    region: Region, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scored_rows: list[tuple[int, int]] = []
    real = incremental_module.dice_candidates

    def spy(a: np.ndarray, b: np.ndarray, **kwargs: object):
        scored_rows.append((len(a), len(b)))
        return real(a, b, **kwargs)

    monkeypatch.setattr(incremental_module, "dice_candidates", spy)
    with region.open(tmp_path / "links.index") as index:
        index.link(region.first(0.9), settings=region.settings)
        assert scored_rows == []  # the build is a full link, not the incremental matcher

        unchanged = index.link(region.first(0.9), settings=region.settings)
        assert scored_rows == []  # nothing new: nothing scored, nothing compared
        assert all(u.scored == 0 and u.compared == 0 for u in unchanged.sources)

        n = int(len(region.encoded["council"]) * 0.9)
        clks = region.encoded["council"].clks[: n + 10].copy()
        clks[:3] ^= np.uint64(0b111)  # three records change
        ids = list(region.extract("council").record_ids[: n + 10])
        report = index.link(
            {"council": Extract(record_ids=ids, clks=clks)},
            settings=region.settings,
        )

    (council,) = report.sources
    assert (council.new, council.changed, council.scored) == (10, 3, 13)
    others = sum(int(len(region.encoded[s]) * 0.9) for s in ("police", "social_care"))
    assert council.compared == others
    # One call per other source, each with the 13 scored records on the left.
    assert sorted(scored_rows) == sorted(
        (13, int(len(region.encoded[s]) * 0.9)) for s in ("police", "social_care")
    )
    # The update's quality estimate is fitted on those 13 records only.
    assert unchanged.quality is None
    assert report.quality is not None
    assert (report.quality.scored, report.quality.sampled) == (13, 13)
    assert len(report.quality.best_scores) <= 13
    assert report.quality.threshold == report.threshold


def test_a_changed_record_is_rematched_and_nothing_else_moves(
    region: Region, tmp_path: Path, helpers: SimpleNamespace
) -> None:
    import pandas as pd

    from oda_fed.node.encode import encode_file
    from oda_fed.node.sources import layout_for

    with region.open(tmp_path / "links.index") as index:
        index.link(region.everything(), settings=region.settings)
        before = all_ids(index)
        links = index.links()
        # A police record linked to others: correct a typo-like change in its family name.
        police = pd.read_csv(region.folder / "police.csv", dtype=str, keep_default_na=False)
        linked_police = set(links[links.source == "police"].record_id)
        row = int(np.flatnonzero(police.nominal_id.isin(linked_police))[0])
        record = police.nominal_id[row]
        police.loc[row, "family_name"] = police.family_name[row] + "E"
        folder = tmp_path / "in"
        folder.mkdir()
        police.to_csv(folder / "police.csv", index=False)
        project = region.loaded.project
        changed = encode_file(
            folder / "police.csv",
            project=project,
            layout=layout_for(project, "police"),
            secret=region.secret,
        )
        report = index.link({"police": helpers.extract_of(changed)}, settings=region.settings)
        after = all_ids(index)

    (update,) = report.sources
    assert (update.changed, update.new, update.removed, update.scored) == (1, 0, 0, 1)
    assert update.joined == 1  # it matched its entity again: the slot it left was free
    assert after == before
    assert after[("police", record)] == before[("police", record)]


def test_a_changed_record_alone_keeps_its_id_and_one_that_moves_leaves_it_retired(
    region: Region, tmp_path: Path
) -> None:
    with region.open(tmp_path / "links.index") as index:
        index.link(region.everything(), settings=region.settings)
        singles = index.links(include_singletons=True)
        size = singles.groupby("entity_id").entity_id.transform("size")
        alone = singles[(size == 1) & (singles.source == "police")].record_id.tolist()
        linked_council = index.links().query("source == 'council'")
        # A council record whose entity holds no police record: a police record can move there.
        police_entities = set(index.links().query("source == 'police'").entity_id)
        target = linked_council[~linked_council.entity_id.isin(police_entities)].iloc[0]
        before = all_ids(index)

        extract = region.extract("police")
        clks = extract.clks.copy()
        position = {r: i for i, r in enumerate(extract.record_ids)}
        council_row = list(region.extract("council").record_ids).index(target.record_id)
        clks[position[alone[0]]] ^= np.uint64(1)  # changes, still matches nothing
        clks[position[alone[1]]] = region.encoded["council"].clks[council_row]  # now matches
        report = index.link(
            {"police": Extract(record_ids=extract.record_ids, clks=clks)},
            settings=region.settings,
        )
        after = all_ids(index)
        retired_total = index.summary().retired

    (update,) = report.sources
    assert (update.changed, update.scored, update.kept, update.joined) == (2, 2, 1, 1)
    assert update.new_entities == 0 and update.retired == 1 and retired_total == 1
    assert after[("police", alone[0])] == before[("police", alone[0])]
    assert after[("police", alone[1])] == target.entity_id
    gone = before[("police", alone[1])]
    assert gone not in after.values()
    assert {k: v for k, v in after.items() if k != ("police", alone[1])} == {
        k: v for k, v in before.items() if k != ("police", alone[1])
    }


def test_removed_records_disappear_and_their_ids_are_never_reused(
    region: Region, tmp_path: Path
) -> None:
    with region.open(tmp_path / "links.index") as index:
        index.link(region.everything(), settings=region.settings)
        before = all_ids(index)
        extract = region.extract("social_care")
        keep = np.arange(len(extract.record_ids)) >= 40  # the first 40 leave
        report = index.link(
            {"social_care": region.extract("social_care", np.flatnonzero(keep))},
            settings=region.settings,
        )
        after = all_ids(index)
        gone = [("social_care", r) for r in list(extract.record_ids)[:40]]
        assert not set(gone) & set(after)
        retired = {before[k] for k in gone} - set(after.values())
        (update,) = report.sources
        assert update.removed == 40 and update.scored == 0
        assert update.retired == len(retired) > 0
        assert index.summary().retired == len(retired)
        # Remaining records keep their ids; a lone partner left behind loses its score.
        assert {k: after[k] for k in after} == {k: before[k] for k in after}
        links = index.links(include_singletons=True)
        size = links.groupby("entity_id").entity_id.transform("size")
        assert links[size == 1].score.isna().all()

        # The same records come back: they are new now, and never get a retired id back.
        report = index.link({"social_care": extract}, settings=region.settings)
        back = all_ids(index)
    assert report.sources[0].new == 40
    assert not {back[k] for k in gone} & retired


def test_updates_in_one_call_see_each_other(
    region: Region, tmp_path: Path, helpers: SimpleNamespace
) -> None:
    """A later source's new records can join an entity an earlier source's created that call."""
    with region.open(tmp_path / "links.index") as index:
        index.link(region.first(0.7), settings=region.settings)
        report = index.link(region.everything(), settings=region.settings)
        links = index.links()
    assert [u.source for u in report.sources] == list(SOURCES)
    new_keys = set()
    for s in SOURCES:
        ids = region.extract(s).record_ids
        new_keys |= {(s, r) for r in list(ids)[int(len(ids) * 0.7) :]}
    new_only = [e for e in helpers.partition(links) if e <= new_keys]
    assert new_only  # entities made of new records only, from two or more sources


def test_incremental_result_is_close_to_a_full_relink(
    region: Region, tmp_path: Path, helpers: SimpleNamespace
) -> None:
    """The documented difference: an update never merges, splits or re-pairs existing entities,
    so a better-scoring new record cannot take a slot an older match holds. On this data the
    linked pairs of the two agree to within 1%, and their quality is the same to 0.005."""
    from oda_fed.matching.metrics import truth_quality

    with region.open(tmp_path / "incremental.index") as index:
        index.link(region.first(0.8), settings=region.settings)
        index.link(region.everything(), settings=region.settings)
        incremental = index.links(include_singletons=True)
    with region.open(tmp_path / "full.index") as index:
        index.link(region.everything(), settings=region.settings)
        full = index.links(include_singletons=True)

    assert len(incremental) == len(full)
    a, b = helpers.linked_pairs(incremental), helpers.linked_pairs(full)
    assert len(a ^ b) <= 0.01 * len(a | b)
    quality = [truth_quality(m, region.truth) for m in (incremental, full)]
    assert abs(quality[0].f1 - quality[1].f1) <= 0.005
    assert quality[0].precision >= 0.99 and quality[0].recall >= 0.95


def test_auto_threshold_is_reused_from_the_last_build(region: Region, tmp_path: Path) -> None:
    with region.open(tmp_path / "links.index") as index:
        built = index.link(region.first(0.8), settings=LinkSettings())
        assert built.threshold is not None and 0.5 <= built.threshold <= 1.0
        assert index.threshold == built.threshold
        assert built.note is not None and "estimated" in built.note
        update = index.link({"police": region.extract("police")}, settings=LinkSettings())
    assert update.threshold == built.threshold
    assert update.note is not None and "reused" in update.note


def test_auto_threshold_needs_a_full_link_first(region: Region, tmp_path: Path) -> None:
    with region.open(tmp_path / "links.index") as index:
        index.link({"council": region.extract("council")}, settings=LinkSettings())
        assert index.threshold is None  # one source: nothing linked, nothing estimated
        with pytest.raises(ConfigError, match="rebuild"):
            index.link({"police": region.extract("police")}, settings=LinkSettings())
        rebuilt = index.link(
            {"police": region.extract("police")}, rebuild=True, settings=LinkSettings()
        )
    assert rebuilt.action == "rebuild" and rebuilt.threshold is not None


def test_an_interrupted_update_leaves_the_index_as_before(
    region: Region, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "links.index"
    with region.open(path) as index:
        index.link(region.first(0.8), settings=region.settings)
        before = (index.links(include_singletons=True), index.summary(), issued(index))
    raw = path.read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut")

    # Fails after the old versions were deleted and the new records inserted.
    monkeypatch.setattr(IndexStore, "set_scores", fail)
    changed = region.everything()
    changed["council"] = region.extract("council", slice(50, None))
    with region.open(path) as index, pytest.raises(RuntimeError, match="power cut"):
        index.link(changed, settings=region.settings)
    monkeypatch.undo()

    # A failure in the second source undoes the first source's update too.
    def stop_at_police(message: str) -> None:
        if "police" in message:
            raise KeyboardInterrupt

    with region.open(path) as index, pytest.raises(KeyboardInterrupt):
        index.link(changed, progress=stop_at_police, settings=region.settings)

    assert path.read_bytes() == raw
    with region.open(path, create=False) as index:
        links, summary, ids = index.links(include_singletons=True), index.summary(), issued(index)
    assert links.equals(before[0])
    assert summary == before[1] and ids == before[2]


def test_rebuild_carries_ids_over_by_overlap(
    region: Region, tmp_path: Path, helpers: SimpleNamespace
) -> None:
    with region.open(tmp_path / "links.index") as index:
        index.link(region.first(0.6), settings=region.settings)
        index.link(region.first(0.8), settings=region.settings)
        index.link(region.everything(), settings=region.settings)
        before = index.links(include_singletons=True)
        report = index.link({}, settings=region.settings, rebuild=True)
        after = index.links(include_singletons=True)
    with region.open(tmp_path / "full.index") as index:
        index.link(region.everything(), settings=region.settings)
        full = index.links(include_singletons=True)

    relink = report.relink
    assert report.action == "rebuild" and relink is not None
    assert helpers.partition(after) == helpers.partition(full)  # a rebuild is a full link
    old_groups = {
        frozenset(zip(g.source, g.record_id, strict=True)): e
        for e, g in before.groupby("entity_id")
    }
    new_groups = {
        frozenset(zip(g.source, g.record_id, strict=True)): e for e, g in after.groupby("entity_id")
    }
    # An entity whose records did not change keeps its id.
    for members, entity in new_groups.items():
        if members in old_groups:
            assert entity == old_groups[members]
    assert relink.ids_kept >= 0.98 * len(new_groups)
    assert relink.ids_kept + relink.ids_new == len(new_groups)
    assert relink.ids_kept + relink.ids_retired == len(old_groups)
    old_id = {(s, r): e for s, r, e in before[["source", "record_id", "entity_id"]].to_numpy()}
    new_id = {(s, r): e for s, r, e in after[["source", "record_id", "entity_id"]].to_numpy()}
    assert relink.records_moved == sum(old_id[k] != new_id[k] for k in new_id)
    assert set(new_id.values()) - set(old_id.values()) == {
        e for m, e in new_groups.items() if e not in old_groups.values()
    }


def test_an_update_blocks_with_lsh_where_the_project_says(
    region: Region, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: SimpleNamespace
) -> None:
    from oda_fed.matching.blocking import Blocking

    calls: list[int] = []
    real = incremental_module.blocked_candidates

    def spy(a: np.ndarray, b: np.ndarray, **kwargs: object):
        calls.append(len(a))
        return real(a, b, **kwargs)

    monkeypatch.setattr(incremental_module, "blocked_candidates", spy)
    pairs = []
    for method in ("none", "lsh"):
        with region.open(tmp_path / f"{method}.index") as index:
            index.link(region.first(0.8), settings=region.settings)
            index.link(
                region.everything(),
                settings=LinkSettings(threshold=region.threshold, blocking=Blocking(method=method)),
            )
            pairs.append(helpers.linked_pairs(index.links()))
    scored = [len(region.encoded[s]) - int(len(region.encoded[s]) * 0.8) for s in SOURCES]
    assert sorted(calls) == sorted(n for n in scored for _ in range(2))  # two others each
    # LSH at 0.8 finds (almost) every pair all-pairs scoring finds: the same links result.
    assert len(pairs[0] ^ pairs[1]) <= 0.01 * len(pairs[0])
