"""Boundary files for map products: a GeoJSON FeatureCollection of areas, read and checked.

A boundary file is public geography (ward or LSOA outlines, say) that the coordinator holds; it
never carries personal data. The project names a boundary set (``boundaries = "wards"``) and may
pin its fingerprint; ``coordinator.toml``'s ``[boundaries]`` says where its file is. A project
whose maps name a set the coordinator does not give, or a file that cannot be drawn, stops the
coordinator at start-up (:func:`check_boundaries`), not a round half-way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from oda_fed.config import AttributeRef, Product, Project, fingerprint_bytes
from oda_fed.errors import ConfigError

__all__ = ["Boundaries", "boundaries_for", "check_boundaries", "read_boundaries"]

#: Codes named in a message at most, so a message stays one readable line.
_NAMED = 5


@dataclass(frozen=True, eq=False)
class Boundaries:
    """A checked boundary file: the shape of every area code it holds.

    Attributes
    ----------
    name
        The boundary set's name, as the project calls it (``"wards"``).
    path
        The file it was read from.
    area_property
        The feature property the codes were read from.
    fingerprint
        ``sha256:`` and the SHA-256 of the file's bytes, as ``sha256sum`` gives it.
    shapes
        Area code to its shape: a Polygon or a MultiPolygon (features sharing a code are one
        area).
    """

    name: str
    path: Path
    area_property: str
    fingerprint: str
    shapes: Mapping[str, BaseGeometry]


def read_boundaries(
    path: Path, *, name: str, area_property: str = "code", fingerprint: str | None = None
) -> Boundaries:
    """Read a GeoJSON FeatureCollection of polygons, keyed by each feature's ``area_property``.

    Parameters
    ----------
    path
        The GeoJSON file.
    name
        The boundary set's name, for messages and captions.
    area_property
        The feature property that holds each area's code (the values the map's attribute takes).
    fingerprint
        The fingerprint the project pins (``sha256:<hex>``), or None.

    Raises
    ------
    ConfigError
        The file is missing or unreadable, differs from the pinned fingerprint, is not JSON or
        not a FeatureCollection, has a feature without the property or with a geometry that is
        not a Polygon or MultiPolygon. The message names the file and what to do.

    Examples
    --------
    >>> import json, tempfile
    >>> square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    >>> doc = {"type": "FeatureCollection", "features": [
    ...     {"type": "Feature", "properties": {"code": "W1"}, "geometry": square}]}
    >>> path = Path(tempfile.mkdtemp()) / "wards.geojson"
    >>> _ = path.write_text(json.dumps(doc))
    >>> read_boundaries(path, name="wards").shapes["W1"].area
    1.0
    """
    path = Path(path)
    what = f"{path}: boundary file '{name}'"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{what} not found: coordinator.toml [boundaries] {name} must name a GeoJSON file "
            "the coordinator can read"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read ({exc.strerror})") from None
    actual = fingerprint_bytes(raw)
    if fingerprint is not None and actual != fingerprint:
        raise ConfigError(
            f"{what} has fingerprint {actual}, but the project pins {fingerprint}: use the "
            "boundary file the partners agreed, or amend the project to pin this one"
        )
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{what} is not JSON ({exc}): it must be GeoJSON") from None
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list) or doc.get("type") != "FeatureCollection":
        raise ConfigError(
            f"{what} is not a GeoJSON FeatureCollection: its top level must be "
            '{"type": "FeatureCollection", "features": [...]}'
        )
    if not features:
        raise ConfigError(f"{what} has no features: it must hold the areas the maps draw")
    parts: dict[str, list[Polygon]] = {}
    unnamed: list[int] = []
    for i, feature in enumerate(features):
        properties = feature.get("properties") if isinstance(feature, dict) else None
        code = properties.get(area_property) if isinstance(properties, dict) else None
        if code is None or str(code).strip() == "":
            unnamed.append(i)
            continue
        parts.setdefault(str(code).strip(), []).extend(_polygons(feature, i, what))
    if unnamed:
        present = sorted(
            {
                key
                for feature in features
                if isinstance(feature, dict) and isinstance(feature.get("properties"), dict)
                for key in feature["properties"]
            }
        )
        raise ConfigError(
            f"{what}: {len(unnamed)} of {len(features)} features have no '{area_property}' "
            f"property (the first is feature {unnamed[0]}). Set area_property in the project "
            "to the property that holds the area code; the features have: "
            + (", ".join(present[:20]) or "no properties")
        )
    shapes = {
        code: polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)
        for code, polygons in parts.items()
    }
    return Boundaries(
        name=name, path=path, area_property=area_property, fingerprint=actual, shapes=shapes
    )


def _polygons(feature: dict, index: int, what: str) -> list[Polygon]:
    """The polygons of one feature's geometry, or a ConfigError that says what it is instead."""
    geometry = feature.get("geometry")
    try:
        geom = shape(geometry) if geometry is not None else None
    except (shapely.errors.GEOSException, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(
            f"{what}: feature {index} has a geometry that is not valid GeoJSON ({exc})"
        ) from None
    if not isinstance(geom, Polygon | MultiPolygon):
        kind = "no geometry" if geom is None else f"a {geom.geom_type}"
        raise ConfigError(
            f"{what}: feature {index} has {kind}; every feature must be a Polygon or "
            "MultiPolygon (the outline of its area)"
        )
    polygons = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    return [p for p in polygons if not p.is_empty]


def boundaries_for(prod: Product, files: Mapping[str, Path]) -> Boundaries:
    """The checked boundaries a map product is drawn on, from the files the coordinator (or
    whoever builds it) holds by boundary set name.

    Raises
    ------
    ConfigError
        No file is given for the product's boundary set, or the file cannot be used
        (:func:`read_boundaries`).
    """
    assert prod.boundaries is not None  # a map names its boundaries
    if prod.boundaries not in files:
        given = ", ".join(sorted(files)) or "none"
        raise ConfigError(
            f"product '{prod.id}' is a map on boundaries '{prod.boundaries}', which the "
            f"configuration does not give (it gives: {given}). Add it to coordinator.toml: "
            f'[boundaries] {prod.boundaries} = "<file>.geojson" (for oda-fed analyse: '
            f"--boundaries {prod.boundaries}=<file>.geojson)"
        )
    return read_boundaries(
        files[prod.boundaries],
        name=prod.boundaries,
        area_property=prod.map_area_property,
        fingerprint=prod.boundaries_fingerprint,
    )


def check_boundaries(project: Project, files: Mapping[str, Path]) -> dict[str, Boundaries]:
    """Check, before any round, that every map of ``project`` can be drawn from ``files``.

    Each map's boundary set must be given and readable, match its pinned fingerprint, and hold
    at least one of the codes its area attribute lists (when it lists them): none in common
    means the wrong file or the wrong ``area_property``.

    Returns
    -------
    dict[str, Boundaries]
        Each map product's boundaries, by product id.

    Raises
    ------
    ConfigError
        Saying which product, which boundary set and what to do.
    """
    checked = {}
    for prod in project.products:
        if prod.kind != "map":
            continue
        boundaries = boundaries_for(prod, files)
        area = AttributeRef.parse(prod.by[0])
        attribute = project.attribute(partner=area.partner, name=area.name)
        listed = attribute.labels or (attribute.domain.codes if attribute.domain else None)
        if listed and not set(listed) & set(boundaries.shapes):
            raise ConfigError(
                f"{boundaries.path}: product '{prod.id}' maps {prod.by[0]}, but none of its "
                f"{len(listed)} codes (e.g. {', '.join(listed[:_NAMED])}) is the "
                f"'{boundaries.area_property}' of a feature (e.g. "
                f"{', '.join(sorted(boundaries.shapes)[:_NAMED])}). Check area_property in "
                "the project and the file in coordinator.toml [boundaries]"
            )
        checked[prod.id] = boundaries
    return checked
