"""How an update places records, on small made-up CLKs whose Dice scores are known exactly."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from oda_fed.index import Extract, LinkedIndex
from oda_fed.index.incremental import place
from oda_fed.index.store import StoredSource
from oda_fed.matching.settings import LinkSettings

FP = "sha256:" + "c" * 64


@pytest.fixture
def index(tmp_path: Path):
    with LinkedIndex.open(tmp_path / "links.index", fingerprint=FP, words=2, create=True) as ix:
        yield ix


def extract(helpers: SimpleNamespace, rows: dict[str, tuple], **tokens: list) -> Extract:
    """Record id -> spans of set bits."""
    return Extract(
        record_ids=list(rows),
        clks=helpers.clks(*(helpers.clk(*spans) for spans in rows.values())),
        tokens=tokens or None,
    )


def test_one_record_per_partner_holds_in_updates(
    index: LinkedIndex, helpers: SimpleNamespace
) -> None:
    index.link(
        {
            "council": extract(helpers, {"c1": [(0, 40)]}),
            "police": extract(helpers, {"p1": [(0, 38)]}),
        },
        settings=LinkSettings(threshold=0.8),
    )
    entity = index.entity_ids("council")["c1"]
    # p2 matches c1 better than p1 does, but c1's entity already holds a police record.
    report = index.link(
        {"police": extract(helpers, {"p1": [(0, 38)], "p2": [(0, 40)]})},
        settings=LinkSettings(threshold=0.8),
    )
    ids = index.entity_ids("police")
    assert ids["p1"] == entity and ids["p2"] != entity
    assert (report.sources[0].joined, report.sources[0].new_entities) == (0, 1)


def test_greedy_by_score_among_new_records(index: LinkedIndex, helpers: SimpleNamespace) -> None:
    index.link(
        {
            "council": extract(helpers, {"c1": [(0, 40)]}),
            "police": extract(helpers, {"p0": [(100, 128)]}),
        },
        settings=LinkSettings(threshold=0.8),
    )
    # Both new records match c1; the better one (p2, Dice 1.0) takes the police slot.
    index.link(
        {"police": extract(helpers, {"p0": [(100, 128)], "p1": [(0, 36)], "p2": [(0, 40)]})},
        settings=LinkSettings(threshold=0.8),
    )
    council = index.entity_ids("council")["c1"]
    police = index.entity_ids("police")
    assert police["p2"] == council and police["p1"] != council
    links = index.links()
    assert sorted(links.record_id) == ["c1", "p2"]
    assert links.score.tolist() == [1.0, 1.0]  # c1 was alone: it takes the joining score


def test_updates_never_merge_existing_entities(
    index: LinkedIndex, helpers: SimpleNamespace
) -> None:
    """The documented difference from a full link: s1 matches both c1 (0.833) and p1 (0.833),
    which do not match each other (0.667). A full link puts all three in one entity; an update
    joins s1 to one of them (ties go to the source added first) and leaves the other apart."""
    first = {
        "council": extract(helpers, {"c1": [(0, 60)]}),
        "police": extract(helpers, {"p1": [(20, 80)]}),
    }
    social = {"social_care": extract(helpers, {"s1": [(10, 70)]})}
    index.link(first, settings=LinkSettings(threshold=0.8))
    index.link(social, settings=LinkSettings(threshold=0.8))
    ids = {s: index.entity_ids(s) for s in ("council", "police", "social_care")}
    assert ids["social_care"]["s1"] == ids["council"]["c1"] != ids["police"]["p1"]

    rebuilt = index.link({}, settings=LinkSettings(threshold=0.8), rebuild=True)
    assert rebuilt.relink is not None and rebuilt.relink.ids_retired == 1
    after = {s: index.entity_ids(s) for s in ("council", "police", "social_care")}
    assert len({after[s][r] for s in after for r in after[s]}) == 1
    assert after["council"]["c1"] == ids["council"]["c1"]  # the larger part keeps its id


def test_keyed_tokens_join_records_whose_clks_disagree(
    index: LinkedIndex, helpers: SimpleNamespace
) -> None:
    index.link(
        {
            "council": extract(helpers, {"c1": [(0, 40)], "c2": [(60, 100)]}, nhs=[b"\x01", None]),
            "police": extract(helpers, {"p1": [(60, 100)]}, nhs=[None]),
        },
        settings=LinkSettings(threshold=0.8),
    )
    report = index.link(
        {"police": extract(helpers, {"p1": [(60, 100)], "p2": [(100, 128)]}, nhs=[None, b"\x01"])},
        settings=LinkSettings(threshold=0.8),
    )
    assert index.entity_ids("police")["p2"] == index.entity_ids("council")["c1"]
    assert report.sources[0].joined == 1
    assert index.links().set_index("record_id").score["p2"] == 1.0

    # Only a token changes: the record has changed and is matched again.
    again = index.link(
        {"police": extract(helpers, {"p1": [(60, 100)], "p2": [(100, 128)]}, nhs=[None, b"\x02"])},
        settings=LinkSettings(threshold=0.8),
    )
    assert (again.sources[0].changed, again.sources[0].unchanged) == (1, 1)
    assert index.entity_ids("police")["p2"] != index.entity_ids("council")["c1"]


def test_a_new_source_is_matched_against_every_other(
    index: LinkedIndex, helpers: SimpleNamespace
) -> None:
    index.link(
        {
            "council": extract(helpers, {"c1": [(0, 40)]}),
            "police": extract(helpers, {"p1": [(60, 100)]}),
        },
        settings=LinkSettings(threshold=0.8),
    )
    report = index.link(
        {"fire": extract(helpers, {"f1": [(0, 40)], "f2": [(60, 100)], "f3": [(110, 128)]})},
        settings=LinkSettings(threshold=0.8),
    )
    fire = index.entity_ids("fire")
    assert fire["f1"] == index.entity_ids("council")["c1"]
    assert fire["f2"] == index.entity_ids("police")["p1"]
    assert index.sources() == ["council", "police", "fire"]
    update = report.sources[0]
    assert (update.new, update.joined, update.new_entities, update.compared) == (3, 2, 1, 2)


def test_place_orders_edges_by_score_then_position(helpers: SimpleNamespace) -> None:
    mine = Extract(
        record_ids=["x", "y"], clks=helpers.clks(helpers.clk((0, 40)), helpers.clk((0, 40)))
    ).normalised("police")
    theirs = StoredSource(
        source="council",
        record_ids=["c1", "c2"],
        entity_ids=["e1", "e2"],
        scores=np.array([np.nan, np.nan]),
        digests=["-", "-"],
        clks=helpers.clks(helpers.clk((0, 40)), helpers.clk((0, 40))),
        tokens={},
    )
    # Ties everywhere: x (first) takes c1 (first), y takes c2.
    placed = place(mine, [theirs], threshold=0.8, one_per_source=True, taken=set())
    assert placed.entity == ["e1", "e2"] and placed.candidates == 4
    # e1 already holds a police record: both go to e2 in turn, so y is left alone.
    placed = place(mine, [theirs], threshold=0.8, one_per_source=True, taken={"e1"})
    assert placed.entity == ["e2", None]
    assert placed.partner == [(0, 1), None]
    # Without one record per partner, the holder does not matter.
    placed = place(mine, [theirs], threshold=0.8, one_per_source=False, taken={"e1"})
    assert placed.entity == ["e1", "e1"]


@pytest.mark.parametrize(("rule", "joins"), [("token", False), ("clk", True)])
def test_an_update_settles_token_conflicts_by_the_project_rule(
    index: LinkedIndex, helpers: SimpleNamespace, rule: str, joins: bool
) -> None:
    """Same CLKs, different NHS-number tokens: "token" forbids the link, "clk" allows it, as in
    a full link (:func:`oda_fed.matching.link.apply_tokens`)."""
    index.link(
        {
            "council": extract(helpers, {"c1": [(0, 40)]}, nhs=[b"\x01"]),
            "police": extract(helpers, {"p0": [(100, 128)]}, nhs=[None]),
        },
        settings=LinkSettings(threshold=0.8, token_rule=rule),
    )
    index.link(
        {"police": extract(helpers, {"p0": [(100, 128)], "p1": [(0, 40)]}, nhs=[None, b"\x02"])},
        settings=LinkSettings(threshold=0.8, token_rule=rule),
    )
    joined = index.entity_ids("police")["p1"] == index.entity_ids("council")["c1"]
    assert joined is joins
