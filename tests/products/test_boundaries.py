"""Boundary files: what a map can be drawn from, and clear errors for what it cannot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shapely.geometry import MultiPolygon

from oda_fed.config import Project, fingerprint_bytes
from oda_fed.errors import ConfigError
from oda_fed.products.boundaries import boundaries_for, check_boundaries, read_boundaries

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def collection(*features: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def feature(properties: dict, geometry: dict | None = SQUARE) -> dict:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def write(tmp_path: Path, doc: object, name: str = "wards.geojson") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_areas_are_read_by_their_property_and_the_file_is_fingerprinted(tmp_path: Path) -> None:
    moved = {"type": "Polygon", "coordinates": [[[2, 0], [3, 0], [3, 1], [2, 1], [2, 0]]]}
    path = write(
        tmp_path,
        collection(
            feature({"WD24CD": 1001, "name": "North"}),
            feature({"WD24CD": "1002"}, moved),
            feature({"WD24CD": "1002"}, SQUARE),  # a second part of the same area
        ),
    )
    boundaries = read_boundaries(path, name="wards", area_property="WD24CD")
    assert sorted(boundaries.shapes) == ["1001", "1002"]  # codes are text, like the attribute
    assert isinstance(boundaries.shapes["1002"], MultiPolygon)
    assert boundaries.shapes["1002"].area == pytest.approx(2.0)
    assert boundaries.fingerprint == fingerprint_bytes(path.read_bytes())


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not JSON"),
        ([1, 2], "is not a GeoJSON FeatureCollection"),
        (feature({"code": "W1"}), "is not a GeoJSON FeatureCollection"),
        (collection(), "has no features"),
        (
            collection(feature({"code": "W1"}), feature({"ward": "W2", "name": "x"})),
            r"1 of 2 features have no 'code' property \(the first is feature 1\)\. Set "
            r"area_property in the project.*code, name, ward",
        ),
        (
            collection(feature({"code": "W1"}, {"type": "Point", "coordinates": [0, 0]})),
            "feature 0 has a Point; every feature must be a Polygon or MultiPolygon",
        ),
        (collection(feature({"code": "W1"}, None)), "feature 0 has no geometry"),
        (
            collection(feature({"code": "W1"}, {"type": "Polygon", "coordinates": "x"})),
            "feature 0 has a geometry that is not valid GeoJSON",
        ),
    ],
)
def test_a_file_that_cannot_be_drawn_says_why(
    tmp_path: Path, content: object, expected: str
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConfigError, match=expected) as info:
        read_boundaries(path, name="wards")
    assert str(path) in str(info.value) and "'wards'" in str(info.value)


def test_a_missing_file_says_where_it_is_configured(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found: coordinator.toml \[boundaries\] wards"):
        read_boundaries(tmp_path / "absent.geojson", name="wards")


def test_a_file_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, collection(feature({"code": "W1"})))
    pinned = "sha256:" + "0" * 64
    with pytest.raises(ConfigError, match="but the project pins sha256:0000"):
        read_boundaries(path, name="wards", fingerprint=pinned)
    right = fingerprint_bytes(path.read_bytes())
    assert read_boundaries(path, name="wards", fingerprint=right).fingerprint == right


def project(**map_keys: object) -> Project:
    return Project.model_validate(
        {
            "name": "p",
            "title": "P",
            "purpose": "testing",
            "legal_gateway": "none",
            "partners": [{"id": "council", "name": "C"}, {"id": "police", "name": "P"}],
            "linkage": {"fields": [{"name": "first_name", "type": "name"}]},
            "attributes": [
                {"name": "ward", "partner": "council", "domain": {"codes": ["W1", "W2"]}}
            ],
            "products": [
                {
                    "id": "ward_map",
                    "kind": "map",
                    "title": "By ward",
                    "by": ["council.ward"],
                    "boundaries": "wards",
                    "recipients": ["council"],
                    **map_keys,
                }
            ],
        }
    )


def test_a_map_on_boundaries_the_coordinator_does_not_give_is_refused(tmp_path: Path) -> None:
    given = {"lsoas": write(tmp_path, collection(feature({"code": "W1"})))}
    with pytest.raises(ConfigError) as info:
        check_boundaries(project(), given)
    message = str(info.value)
    assert "product 'ward_map' is a map on boundaries 'wards'" in message
    assert "it gives: lsoas" in message and '[boundaries] wards = "<file>.geojson"' in message


def test_boundaries_sharing_no_code_with_the_attribute_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, collection(feature({"code": "E05000001"})))
    with pytest.raises(ConfigError, match=r"none of its 2 codes \(e.g. W1, W2\).*area_property"):
        check_boundaries(project(), {"wards": path})


def test_checked_boundaries_are_each_maps_and_honour_the_project(tmp_path: Path) -> None:
    path = write(tmp_path, collection(feature({"gss": "W1"})))
    pinned = fingerprint_bytes(path.read_bytes())
    checked = check_boundaries(
        project(area_property="gss", boundaries_fingerprint=pinned), {"wards": path}
    )
    assert list(checked) == ["ward_map"]
    assert checked["ward_map"].area_property == "gss"
    prod = project().products[0]
    with pytest.raises(ConfigError, match="which the configuration does not give"):
        boundaries_for(prod, {})
