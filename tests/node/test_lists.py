"""The owner's node turns a list's refs into its record ids, and refuses a list that carries
more than the project allows: the attack of a coordinator (or anyone in its place) slipping in
another column, or refs the node never issued."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from oda_fed.config import Product
from oda_fed.node.lists import with_record_ids
from oda_fed.node.policy import Refused
from oda_fed.node.rounds import RoundFiles
from oda_fed.transport.messages import ProductRelease, ReleasedFile

LIST = Product.model_validate(
    {
        "id": "visit_first",
        "kind": "list",
        "title": "Visit first",
        "owner": "council",
        "recipients": ["council"],
        "indicators": [
            {"attribute": "police.incident", "points": {"yes": 3}, "group": "police"},
            {"attribute": "care.age", "points": {"65+": 2}, "group": "care"},
        ],
        "score_bands": [2, 4],
        "show_groups": True,
    }
)


@pytest.fixture
def files(tmp_path) -> RoundFiles:
    round_files = RoundFiles(tmp_path, "2026-12-04-0001")
    round_files.save(
        record_ids=np.array([f"C{i:03d}" for i in range(10)], dtype=object),
        clks=np.zeros((10, 16), dtype=np.uint64),
        attributes={},
        tokens={},
    )
    return round_files


def release(text: str, name: str = "visit_first.csv") -> ProductRelease:
    return ProductRelease(
        product_id="visit_first",
        title="Visit first",
        files=(ReleasedFile(name=name, media_type="text/csv", content=text.encode()),),
        released_by="operator:ops",
    )


def test_refs_become_the_nodes_record_ids(files) -> None:
    got, n = with_record_ids(
        LIST, release("ref,rank,score_band,groups\n7,1,4+,care+police\n2,2,2-3,withheld\n"), files
    )
    assert n == 2
    frame = pd.read_csv(io.BytesIO(got[0].content), dtype=str)
    assert frame.to_dict("list") == {
        "record_id": ["C007", "C002"],
        "rank": ["1", "2"],
        "score_band": ["4+", "2-3"],
        "groups": ["care+police", "withheld"],
    }


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ref,rank,score_band,groups,score\n1,1,4+,care,7\n", "carries columns"),
        ("ref,rank,score_band,groups,ward\n1,1,4+,care,E05000001\n", "carries columns"),
        ("ref,rank,score_band\n1,1,4+\n", "carries columns"),
        ("ref,rank,score_band,groups\n1,1,7,care\n", "values in score_band"),
        ("ref,rank,score_band,groups\n1,3,4+,care\n", "values in rank"),
        ("ref,rank,score_band,groups\n1,1,4+,fire\n", "values in groups"),
        ("ref,rank,score_band,groups\n10,1,4+,care\n", "not one this node issued"),
        ("ref,rank,score_band,groups\n-1,1,4+,care\n", "not one this node issued"),
        ("ref,rank,score_band,groups\n1,1,4+,care\n1,1,4+,care\n", "comes twice"),
        ("ref,rank,score_band,groups\nC001,1,4+,care\n", "not one this node issued"),
    ],
)
def test_a_list_carrying_more_than_the_project_allows_is_refused(files, text, why) -> None:
    with pytest.raises(Refused, match=why):
        with_record_ids(LIST, release(text), files)


def test_a_list_with_another_file_or_for_a_round_without_refs_is_refused(files, tmp_path) -> None:
    with pytest.raises(Refused, match="comes as one file"):
        with_record_ids(LIST, release("ref\n", name="other.csv"), files)
    with pytest.raises(Refused, match="holds no refs"):
        with_record_ids(
            LIST, release("ref,rank,score_band,groups\n"), RoundFiles(tmp_path, "2026-12-04-0002")
        )
