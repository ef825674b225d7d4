"""The synthetic region's ward boundaries: every ward the data records, once, and drawable."""

from __future__ import annotations

import json
from pathlib import Path

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape

from oda_fed.products.boundaries import read_boundaries
from oda_fed.synth import ward_boundaries, write_ward_boundaries
from oda_fed.synth.project import ward_codes


def test_every_ward_of_the_region_has_one_outline_and_none_overlap() -> None:
    doc = ward_boundaries()
    codes = [f["properties"]["code"] for f in doc["features"]]
    assert codes == ward_codes()
    shapes = [shape(f["geometry"]) for f in doc["features"]]
    assert all(s.is_valid and not s.is_empty for s in shapes)
    union = shapely.union_all(shapes)
    assert abs(sum(s.area for s in shapes) - union.area) < 1e-6 * union.area  # no overlaps
    # A reservoir leaves a hole in one ward, and one ward has an exclave.
    assert sum(len(s.interiors) for s in shapes if isinstance(s, Polygon)) == 1
    assert sum(isinstance(s, MultiPolygon) for s in shapes) == 1
    # Longitude and latitude, in the Pennines.
    x0, y0, x1, y1 = union.bounds
    assert -2.6 < x0 < x1 < -1.3 and 53.3 < y0 < y1 < 54.0


def test_the_same_seed_gives_the_same_file(tmp_path: Path) -> None:
    first = write_ward_boundaries(tmp_path / "a.geojson").read_bytes()
    assert write_ward_boundaries(tmp_path / "b.geojson").read_bytes() == first
    assert write_ward_boundaries(tmp_path / "c.geojson", seed=8).read_bytes() != first
    assert json.loads(first)["type"] == "FeatureCollection"


def test_a_map_can_be_drawn_on_them(tmp_path: Path) -> None:
    boundaries = read_boundaries(write_ward_boundaries(tmp_path / "w.geojson"), name="wards")
    assert sorted(boundaries.shapes) == ward_codes()
