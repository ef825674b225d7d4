"""Made-up ward boundaries of the synthetic region, as a GeoJSON FeatureCollection.

The region and its wards do not exist: the outlines are Voronoi cells of seeded points, evened out
by a few rounds of Lloyd's relaxation and clipped to a made-up outline near the Pennines. One ward
has a reservoir (a hole) and one an exclave (a MultiPolygon), as real wards do, so the demo's map
draws both. The same seed gives the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiPoint, Point, Polygon, mapping
from shapely.ops import voronoi_diagram

from oda_fed.synth.lexicon import load_lexicon

__all__ = ["AREA_PROPERTY", "ward_boundaries", "write_ward_boundaries"]

#: The feature property holding each ward's code (what a project's ``area_property`` names).
AREA_PROPERTY = "code"

# The region's centre (longitude, latitude) and half-extent in degrees: about 60 by 45 km.
_CENTRE = (-1.95, 53.65)
_HALF = (0.45, 0.2)
_LLOYD_ROUNDS = 4
# Coordinates are written to 5 decimal places (about a metre), which keeps the file small.
_DIGITS = 5


def _wards() -> list[tuple[str, str]]:
    """Each ward code of the region once, with its name, in code order."""
    named = {d.ward_code: d.ward_name for d in load_lexicon().districts}
    return sorted(named.items())


def _outline(rng: np.random.Generator) -> Polygon:
    """A made-up region: an ellipse whose radius wanders a little."""
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    wobble = 1.0 + np.convolve(rng.normal(0, 0.08, 48 + 4), np.ones(5) / 5, mode="valid")
    x = _CENTRE[0] + _HALF[0] * wobble * np.cos(angles)
    y = _CENTRE[1] + _HALF[1] * wobble * np.sin(angles)
    return Polygon(np.column_stack([x, y]))


def _cells(points: np.ndarray, region: Polygon) -> list[Polygon]:
    """Each point's Voronoi cell clipped to ``region``, in the order of ``points``."""
    envelope = region.buffer(1.0).envelope
    diagram = voronoi_diagram(MultiPoint(points), envelope=envelope)
    cells = list(diagram.geoms)
    ordered = []
    for x, y in points:
        point = Point(x, y)
        cell = next(c for c in cells if c.contains(point))
        ordered.append(cell.intersection(region))
    return ordered


def ward_boundaries(*, seed: int = 7) -> dict:
    """The synthetic region's wards as a GeoJSON FeatureCollection (longitude, latitude).

    Each feature's properties are ``code`` (the ward code the synthetic council records, e.g.
    ``E05100001``) and ``name``. Codes run from east to west, roughly as the region's towns do.

    Parameters
    ----------
    seed
        The same seed gives the same wards.

    Examples
    --------
    >>> doc = ward_boundaries()
    >>> doc["type"], len(doc["features"]), doc["features"][0]["properties"]["code"]
    ('FeatureCollection', 30, 'E05100001')
    """
    rng = np.random.default_rng(seed)
    wards = _wards()
    region = _outline(rng)
    x0, y0, x1, y1 = region.bounds
    points: list[tuple[float, float]] = []
    while len(points) < len(wards):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if region.contains(Point(x, y)):
            points.append((x, y))
    seeds = np.array(points)
    for _ in range(_LLOYD_ROUNDS):  # even the cells out: each point moves to its cell's centre
        seeds = np.array([(c.centroid.x, c.centroid.y) for c in _cells(seeds, region)])
    # A reservoir in the middle of one ward, and an exclave beyond the outline for another.
    lake = Point(*seeds[len(seeds) // 2]).buffer(0.025, quad_segs=8)
    east = region.bounds[2]
    exclave = Point(east + 0.04, _CENTRE[1] + 0.02).buffer(0.02, quad_segs=4)
    cells = _cells(seeds[np.argsort(-seeds[:, 0], kind="stable")], region.difference(lake))
    nearest = int(np.argmin([c.distance(exclave) for c in cells]))
    cells[nearest] = cells[nearest].union(exclave)
    features = [
        {
            "type": "Feature",
            "properties": {AREA_PROPERTY: code, "name": name},
            "geometry": mapping(shapely.set_precision(cell, 10.0**-_DIGITS)),
        }
        for (code, name), cell in zip(wards, cells, strict=True)
    ]
    return {"type": "FeatureCollection", "features": features}


def write_ward_boundaries(path: Path, *, seed: int = 7) -> Path:
    """Write :func:`ward_boundaries` as GeoJSON to ``path`` (its folder must exist).

    Examples
    --------
    >>> import tempfile
    >>> write_ward_boundaries(Path(tempfile.mkdtemp()) / "wards.geojson").suffix
    '.geojson'
    """
    path = Path(path)
    text = json.dumps(ward_boundaries(seed=seed), separators=(",", ":"), sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")
    return path
