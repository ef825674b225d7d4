"""Attributes derived at the node: only the derived value leaves, and only inside its domain."""

from __future__ import annotations

from pathlib import Path

import pytest

from oda_fed.config import Attribute
from oda_fed.errors import InputDataError
from oda_fed.node.derive import derive


def attribute(**fields) -> Attribute:
    return Attribute.model_validate({"name": "ward", "partner": "council", **fields})


WARD = {"pattern": "E05[0-9]{6}", "max_distinct": 10}


def test_a_value_leaves_as_it_is_when_it_is_in_its_domain() -> None:
    assert derive(attribute(domain=WARD), [" E05000001", "", "E05000002 "]) == [
        "E05000001",
        "",
        "E05000002",
    ]


def test_a_mis_mapped_column_stops_the_node_and_the_error_quotes_no_value() -> None:
    surnames = ["Nicholson", "Smith", "E05000001", "Okafor"]
    with pytest.raises(InputDataError) as info:
        derive(attribute(domain=WARD), surnames)
    message = str(info.value)
    assert "3 of 4 values are outside the domain" in message and "nothing was sent" in message
    assert "[source.attributes]" in message
    assert not any(name in message for name in ("Nicholson", "Smith", "Okafor"))


def test_one_made_up_code_per_record_is_stopped_by_max_distinct() -> None:
    unique = [f"E05{i:06d}" for i in range(11)]
    with pytest.raises(InputDataError, match="11 distinct values, more than"):
        derive(attribute(domain=WARD), unique)


def test_a_category_mapping_leaves_only_its_categories() -> None:
    tenure = attribute(
        name="tenure",
        derive="category",
        categories={"HA": "social rent", "LA": "social rent", "PR": "private rent"},
    )
    assert derive(tenure, ["HA", "PR", "XX", ""]) == ["social rent", "private rent", "", ""]


def test_an_age_band_at_the_reference_date() -> None:
    age = attribute(name="age", derive="age_band", at="2026-04-01", bands=[0, 18, 65])
    born = ["01/04/2008", "02/04/2008", "31/03/1961", "not a date", ""]
    assert derive(age, born) == ["18-64", "0-17", "65+", "", ""]
    assert derive(age, ["2008-04-01"], date_format="%Y-%m-%d") == ["18-64"]


def test_a_lookup_held_by_the_node(tmp_path: Path) -> None:
    table = tmp_path / "postcode_to_ward.csv"
    table.write_text("postcode,ward\nLS6 2AB,E05000001\nls1 1aa,E05000002\n")
    ward = attribute(derive="lookup", lookup="postcode_to_ward", domain=WARD)
    lookups = {"postcode_to_ward": table}
    got = derive(ward, ["LS62AB", "LS1 1AA", "ZZ9 9ZZ"], lookups=lookups)
    assert got == ["E05000001", "E05000002", ""]
    with pytest.raises(InputDataError, match=r"\[source.lookups\] postcode_to_ward"):
        derive(ward, ["LS62AB"], lookups={})
    with pytest.raises(InputDataError, match="not found"):
        derive(ward, ["LS62AB"], lookups={"postcode_to_ward": tmp_path / "missing.csv"})
    table.write_text("postcode,ward\nLS6 2AB,E05000001\nls6 2ab,E05000002\n")
    with pytest.raises(InputDataError, match="lists 1 value"):
        derive(ward, ["LS62AB"], lookups=lookups)
    table.write_text("postcode,ward\nLS6 2AB,Headingley\n")
    with pytest.raises(InputDataError, match="outside the domain"):
        derive(ward, ["LS62AB"], lookups=lookups)
