"""Map products drawn from a boundary file: a suppressed area never looks like zero or like no
data, holes stay empty, and what cannot be drawn is said in the caption."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.image import imread
from shapely.geometry import Point, box

from oda_fed.disclosure import DisclosureRules
from oda_fed.products import ProductError, ProductTable, write_product
from oda_fed.products.boundaries import read_boundaries
from oda_fed.products.charts import PNG_SIGNATURE
from oda_fed.products.maps import NO_DATA_COLOUR, SUPPRESSED_COLOUR, draw_map, scale

DIM = "council.ward"


def square(x: float, y: float, size: float = 1.0) -> list[list[list[float]]]:
    return [[[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]]


def feature(code: str, geometry: dict) -> dict:
    return {"type": "Feature", "properties": {"code": code}, "geometry": geometry}


def write_geojson(path: Path, features: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.fixture
def wards(tmp_path: Path) -> Path:
    """Five areas: A, Z (zero), S (suppressed), N (no row) and M, a square with a hole and an
    island apart from it."""
    hole = [[1.35, 1.35], [1.35, 1.65], [1.65, 1.65], [1.65, 1.35], [1.35, 1.35]]
    with_hole = [square(1, 1)[0], hole]
    return write_geojson(
        tmp_path / "wards.geojson",
        [
            feature("A", {"type": "Polygon", "coordinates": square(0, 0)}),
            feature("Z", {"type": "Polygon", "coordinates": square(1, 0)}),
            feature("S", {"type": "Polygon", "coordinates": square(2, 0)}),
            feature("N", {"type": "Polygon", "coordinates": square(0, 1)}),
            feature(
                "M",
                {"type": "MultiPolygon", "coordinates": [with_hole, square(2.2, 1.2, 0.6)]},
            ),
        ],
    )


def map_product(wards: Path, *, rows: dict[str, int | None]) -> ProductTable:
    """A controlled-looking count map with the rows given (None: suppressed)."""
    table = pd.DataFrame(
        {
            DIM: list(rows),
            "count": pd.array(list(rows.values()), dtype="Int64"),
            "suppressed": [v is None for v in rows.values()],
        }
    )
    return ProductTable(
        product_id="ward_map",
        title="Residents by ward",
        table=table,
        rules=DisclosureRules(min_cell=10, rounding_base=5),
        suppressed_cells=sum(v is None for v in rows.values()),
        unknown_area="not known",
        dims=(DIM,),
        boundaries=read_boundaries(wards, name="wards"),
    )


ROWS = {"A": 20, "Z": 0, "S": None, "M": 40, "X": 25, "not known": 30}


@dataclass
class Rendered:
    """A map drawn and saved as PNG, read back as RGB pixels."""

    product: ProductTable
    fig: Figure
    image: np.ndarray

    def at(self, x: float, y: float, half: int = 0) -> np.ndarray:
        """The pixels of the PNG around map coordinates ``(x, y)``, one RGB row each."""
        px, py = self.fig.axes[0].transData.transform((x, y))
        row, col = int(round(self.image.shape[0] - py)), int(round(px))
        return self.image[row - half : row + half + 1, col - half : col + half + 1].reshape(-1, 3)

    def colour(self, value: float) -> np.ndarray:
        """The colour the map's scale gives a published value."""
        cmap, norm = scale(self.product)
        return np.array(to_rgb(cmap(norm(value))))


@pytest.fixture
def drawn(wards: Path, tmp_path: Path) -> Rendered:
    product = map_product(wards, rows=ROWS)
    fig = draw_map(product)
    path = tmp_path / "map.png"
    fig.savefig(path, format="png", dpi=fig.dpi)
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    return Rendered(product=product, fig=fig, image=imread(path)[:, :, :3])


def test_suppressed_zero_and_no_data_areas_are_three_different_colours(drawn: Rendered) -> None:
    zero = drawn.colour(0)
    # Zero is published: the light end of the scale, not white.
    assert np.abs(drawn.at(1.5, 0.5) - zero).max() < 0.02
    assert np.abs(zero - to_rgb(NO_DATA_COLOUR)).max() > 0.1
    # Suppressed: hatched grey all around its centre, nowhere the colour of zero.
    suppressed = drawn.at(2.5, 0.5, half=6)
    assert (suppressed.max(axis=1) - suppressed.min(axis=1)).max() < 0.03  # grey, no blue
    assert np.abs(suppressed - zero).max(axis=1).min() > 0.1
    assert np.abs(suppressed.mean(axis=0) - to_rgb(SUPPRESSED_COLOUR)).max() < 0.15
    # No row at all: dotted white, neither zero nor suppressed, nor the plain white of a hole.
    no_data = drawn.at(0.5, 1.5, half=8)
    assert (no_data.max(axis=1) - no_data.min(axis=1)).max() < 0.03  # grey dots on white
    assert np.abs(no_data - zero).max(axis=1).min() > 0.05  # not one pixel of zero's blue
    assert np.abs(no_data.mean(axis=0) - to_rgb(NO_DATA_COLOUR)).max() < 0.15
    assert np.abs(no_data.mean(axis=0) - suppressed.mean(axis=0)).max() > 0.2
    assert no_data.min() < 0.8  # the dots

    legend = [t.get_text() for t in drawn.fig.axes[0].get_legend().get_texts()]
    assert "suppressed (not zero)" in legend and any("no data" in t for t in legend)


def test_a_multipolygon_is_drawn_in_every_part_and_not_in_its_hole(drawn: Rendered) -> None:
    forty = drawn.colour(40)
    assert np.abs(drawn.at(1.2, 1.2) - forty).max() < 0.02  # the square
    assert np.abs(drawn.at(2.5, 1.5) - forty).max() < 0.02  # the island
    hole = drawn.at(1.5, 1.5, half=4)
    assert np.abs(hole - forty).max(axis=1).min() > 0.1
    assert hole.min() > 0.99  # the plain white beneath: no fill, no dots


def test_the_caption_says_what_the_map_cannot_show(wards: Path) -> None:
    fig = draw_map(map_product(wards, rows=ROWS))
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "30 not shown: area not known" in caption
    assert "no boundary in 'wards': X (25)" in caption  # listed, not dropped
    assert "sha256:" in caption and "wards.geojson" in caption
    assert fig.axes[0].get_title() == "Residents by ward"


def test_an_unknown_row_that_is_suppressed_says_so(wards: Path) -> None:
    fig = draw_map(map_product(wards, rows={**ROWS, "not known": None}))
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "Not shown: area not known (suppressed)" in caption


def test_a_rate_map_shows_shares_in_percent(wards: Path) -> None:
    base = map_product(wards, rows={"A": 10, "Z": 0, "S": None, "M": 20, "not known": 5})
    table = base.table.assign(
        denominator=pd.array([40, 20, None, 40, 50], dtype="Int64"),
        rate=[0.25, 0.0, np.nan, 0.5, 0.1],
    )
    product = ProductTable(
        product_id="share_map",
        title="Share by ward",
        table=table,
        rules=base.rules,
        suppressed_cells=base.suppressed_cells,
        unknown_area="not known",
        dims=(DIM,),
        boundaries=base.boundaries,
    )
    fig = draw_map(product)
    assert scale(product)[1].vmax == 50.0
    assert fig.axes[1].get_ylabel() == "share (%)"
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "Not shown: area not known (10.0% of 50)" in caption


def test_write_product_writes_the_csv_and_a_map_png(wards: Path, tmp_path: Path) -> None:
    product = map_product(wards, rows=ROWS)
    paths = write_product(product, tmp_path / "out")
    assert paths["png"].read_bytes().startswith(PNG_SIGNATURE)
    lines = paths["csv"].read_text().splitlines()
    assert lines[0] == "council.ward,count,suppressed"
    assert "S,suppressed,true" in lines and "Z,0,false" in lines


def test_projected_coordinates_are_drawn_equal(tmp_path: Path) -> None:
    # British National Grid metres: far outside longitude and latitude.
    cells = [box(400_000 + 1000 * i, 430_000, 401_000 + 1000 * i, 431_000) for i in range(2)]
    path = write_geojson(
        tmp_path / "bng.geojson",
        [
            feature(code, {"type": "Polygon", "coordinates": [list(c.exterior.coords)]})
            for code, c in zip(["A", "B"], cells, strict=True)
        ],
    )
    fig = draw_map(map_product(path, rows={"A": 10, "B": 15}))
    assert fig.axes[0].get_aspect() == 1.0
    assert Point(400_500, 430_500).within(cells[0])


def test_a_product_without_boundaries_is_not_a_map(controlled_product: ProductTable) -> None:
    with pytest.raises(ProductError, match="not a map"):
        draw_map(controlled_product)


def test_a_map_has_one_dimension(wards: Path, controlled_product: ProductTable) -> None:
    with pytest.raises(ProductError, match="one dimension"):
        replace(controlled_product, boundaries=read_boundaries(wards, name="wards"))


# --- labels from nodes ----------------------------------------------------------------------------

HUGE = "E05" + "9" * (2 * 1024 * 1024) + "\x1b[2J"


def test_a_huge_area_code_is_cut_short_on_a_map(wards: Path) -> None:
    # Measured: a 2 MiB area label took 113 s and 1.7 GiB to chart. The coordinator refuses such
    # a label before it is kept (tests/coordinator/test_limits.py); a map never draws one.
    fig = draw_map(map_product(wards, rows={**ROWS, HUGE: 15}))
    caption = fig.get_supxlabel()
    assert len(caption) < 2000 and "\x1b" not in caption
    assert "E0599999" in caption and "…" in caption


def test_a_huge_area_label_is_cut_short_on_a_chart() -> None:
    from oda_fed.products.charts import LABEL_CHARS, draw_product
    from oda_fed.products.tables import partner_count_by_area

    product = partner_count_by_area(
        entity_partners=pd.Series([1] * 30 + [2] * 30),
        entity_area=pd.Series(["W1"] * 30 + [HUGE] * 30),
        product_id="p",
        title="Known to services",
        rules=DisclosureRules(),
        n_partners=2,
    )
    fig = draw_product(product)
    ticks = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
    assert any(t.startswith("E0599") for t in ticks)
    assert all(len(t) <= LABEL_CHARS and "\x1b" not in t for t in ticks)
