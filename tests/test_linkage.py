"""The one linkage run: afresh and into a linked index, one typed result, one translation of the
project's [linkage] section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oda_fed.config import Linkage
from oda_fed.errors import InputDataError, ProjectMismatchError
from oda_fed.index import Extract
from oda_fed.linkage import IndexTarget, run_linkage, settings_for
from oda_fed.matching.blocking import Blocking
from oda_fed.matching.settings import LinkSettings

FP = "sha256:" + "d" * 64


def _clk(lo: int, hi: int) -> np.ndarray:
    bits = np.zeros(128, dtype=bool)
    bits[lo:hi] = True
    return np.packbits(bits.reshape(2, 64)[:, ::-1], axis=1).view(">u8").ravel().astype(np.uint64)


def _extract(ids: list[str], spans: list[tuple[int, int]]) -> Extract:
    return Extract(record_ids=ids, clks=np.ascontiguousarray(np.stack([_clk(*s) for s in spans])))


@pytest.fixture
def extracts() -> dict[str, Extract]:
    # c1 ~ p1 (identical), c2 ~ p2 (0.95), c3 and p3 match nothing.
    return {
        "council": _extract(["c1", "c2", "c3"], [(0, 40), (50, 90), (100, 110)]),
        "police": _extract(["p1", "p2", "p3"], [(0, 40), (50, 88), (112, 128)]),
    }


def test_settings_come_from_the_project_once_and_are_checked() -> None:
    linkage = Linkage.model_validate(
        {
            "threshold": 0.7,
            "one_record_per_partner": False,
            "token_conflict": "clk",
            "quality_sample": 300,
            "blocking": {"method": "lsh", "bands": 9, "max_block": 1000},
            "method": "fields",
            "match_probability": 0.8,
            "fields": [{"name": "first_name", "type": "name"}],
        }
    )
    settings = settings_for(linkage)
    assert settings == LinkSettings(
        threshold=0.7,
        one_per_source=False,
        token_rule="clk",
        quality_sample=300,
        blocking=Blocking(method="lsh", bands=9, max_block=1000),
        method="fields",
        match_probability=0.8,
        fields=(("first_name", "name"),),
    )
    with pytest.raises(Exception, match="threshold must be in"):
        LinkSettings(threshold=0)
    with pytest.raises(Exception, match="token rule"):
        LinkSettings(token_rule="nhs")  # type: ignore[arg-type]
    with pytest.raises(Exception, match="match_probability must be in"):
        LinkSettings(match_probability=1.0)
    with pytest.raises(Exception, match='method = "fields" needs the linkage fields'):
        LinkSettings(method="fields")


def test_a_fresh_link_numbers_entities_and_gives_every_record_one(extracts) -> None:
    result = run_linkage(extracts, settings=LinkSettings(threshold=0.8), entity_ids="numbered")
    assert result.sources == ("council", "police") and result.index_report is None
    members = result.members
    assert list(members.columns) == ["entity_id", "source", "record_id", "score"]
    assert len(members) == 6 and result.entities == 4 and result.linked_entities == 2
    assert result.entities_by_partner_count() == {1: 2, 2: 2}
    links = result.links()
    assert set(links.record_id) == {"c1", "p1", "c2", "p2"}
    assert links.entity_id.str.fullmatch(r"e\d{7}").all()
    entity, score = result.assignments("police", ["p3", "p1"])
    assert entity[1] == result.assignments("council", ["c1"])[0][0] and score[0] is None
    assert "4 entities, 2 known to two or more partners; threshold 0.80" in result.summary()


def test_random_ids_say_nothing_of_order(extracts) -> None:
    result = run_linkage(extracts, settings=LinkSettings(threshold=0.8))
    ids = result.members.entity_id
    assert ids.str.fullmatch(r"[0-9a-f]{16}").all() and ids.nunique() == 4


def test_truth_quality_and_its_refusals(extracts) -> None:
    result = run_linkage(extracts, settings=LinkSettings(threshold=0.8))
    truth = pd.DataFrame(
        {
            "source": ["council"] * 3 + ["police"] * 3,
            "record_id": ["c1", "c2", "c3", "p1", "p2", "p3"],
            "person_id": ["a", "b", "c", "a", "b", "d"],
        }
    )
    q = result.quality(truth)
    assert (q.precision, q.recall, q.true_pairs) == (1.0, 1.0, 2)
    with pytest.raises(InputDataError, match="no person for record 'p3' of 'police'"):
        result.quality(truth.iloc[:-1])
    with pytest.raises(InputDataError, match="lacks column"):
        result.quality(truth.drop(columns="person_id"))
    with pytest.raises(InputDataError, match="twice"):
        result.quality(pd.concat([truth, truth.iloc[:1]]))


def test_into_an_index_ids_stay_stable_and_the_update_says_what_changed(
    extracts, tmp_path: Path
) -> None:
    target = IndexTarget(path=tmp_path / "links.index", fingerprint=FP, words=2)
    settings = LinkSettings(threshold=0.8)
    built = run_linkage(extracts, settings=settings, index=target)
    assert built.index_report is not None and built.index_report.action == "build"
    assert "linked index build: entity ids stay stable" in built.summary()
    before = built.assignments("council", ["c1", "c2"])[0]

    police = _extract(["p1", "p2", "p3", "p4"], [(0, 40), (50, 88), (112, 128), (100, 110)])
    updated = run_linkage({"police": police}, settings=settings, index=target)
    assert updated.index_report.action == "update"
    assert updated.assignments("council", ["c1", "c2"])[0] == before
    p4 = updated.assignments("police", ["p4"])[0][0]
    assert p4 == updated.assignments("council", ["c3"])[0][0]
    text = updated.summary()
    assert "updated incrementally" in text and "1 new" in text and "this update's records" in text


def test_an_index_refuses_too_few_sources_and_another_project(extracts, tmp_path: Path) -> None:
    path = tmp_path / "links.index"
    settings = LinkSettings(threshold=0.8)
    target = IndexTarget(path=path, fingerprint=FP, words=2)
    with pytest.raises(InputDataError, match="at least two sources"):
        run_linkage({"council": extracts["council"]}, settings=settings, index=target)
    assert not path.exists()
    run_linkage(extracts, settings=settings, index=target)
    other = IndexTarget(path=path, fingerprint="sha256:" + "e" * 64, words=2)
    with pytest.raises(ProjectMismatchError):
        run_linkage(extracts, settings=settings, index=other)


def test_members_are_sorted_by_entity_then_source_then_record_id() -> None:
    # Without one record per partner, one entity holds two police records: ids break the tie.
    extracts = {
        "police": _extract(["p9", "p1"], [(0, 40), (0, 40)]),
        "council": _extract(["c1"], [(0, 40)]),
    }
    settings = LinkSettings(threshold=0.8, one_per_source=False)
    members = run_linkage(extracts, settings=settings, entity_ids="numbered").members
    assert members[["source", "record_id"]].values.tolist() == [
        ["council", "c1"],
        ["police", "p1"],
        ["police", "p9"],
    ]
    assert members.entity_id.nunique() == 1
