"""Choropleth maps of data products: each area of a boundary file coloured by its published value.

Three states must never be mistaken for one another: a published value (zero included, the
lightest colour of the scale), a suppressed area (hatched grey: a value exists but is withheld),
and an area with no row in the table ("no data", dotted white). Only controlled values are drawn.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
import shapely
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, PathPatch
from matplotlib.path import Path as MplPath
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from oda_fed.products.charts import _plain, label
from oda_fed.products.tables import ProductError, ProductTable

__all__ = ["NO_DATA_COLOUR", "SUPPRESSED_COLOUR", "draw_map", "scale"]

#: The fill of an area whose value is suppressed, hatched over in the outline's colour.
SUPPRESSED_COLOUR = "#b0b0b0"
SUPPRESSED_HATCH = "///"
#: The fill of an area of the boundary file with no row in the table, dotted so that it is not
#: taken for a hole (a lake, an area of another authority), which shows the white beneath.
NO_DATA_COLOUR = "#ffffff"
NO_DATA_HATCH = ".."
_EDGE = "#505050"
# The light end of the scale is cut off, so that zero is a colour of its own, not white.
_SCALE = ListedColormap(colormaps["Blues"](np.linspace(0.22, 1.0, 256)), name="oda_fed_scale")
# Codes listed by name at most in the caption of areas with no boundary.
_LISTED = 8
_MAP_WIDTH_IN = 6.5
_WRAP = 110


def scale(product: ProductTable) -> tuple[ListedColormap, Normalize]:
    """The colour scale of a map: from zero to the largest published value it draws (percent
    for a rate); the row of entities whose area is not known is not drawn, so not counted.

    Examples
    --------
    >>> import pandas as pd
    >>> from oda_fed.disclosure import DisclosureRules
    >>> from oda_fed.products.tables import partner_count_by_area
    >>> product = partner_count_by_area(
    ...     entity_partners=pd.Series([1]), entity_area=pd.Series(["W1"]),
    ...     product_id="p", title="t", rules=DisclosureRules(), n_partners=1)
    >>> scale(product)[1].vmin
    0.0
    """
    dim = product.dims[0]
    drawn = product.boundaries.shapes if product.boundaries is not None else None
    shown = [
        v
        for _, row in product.table.iterrows()
        if str(row[dim]) != product.unknown_area
        and (drawn is None or str(row[dim]) in drawn)
        and (v := product.value(row)) is not None
    ]
    floor = 1.0 if product.is_rate else float(max(product.rules.min_cell, 1))
    return _SCALE, Normalize(vmin=0.0, vmax=max([floor, *shown]))


def draw_map(product: ProductTable) -> Figure:
    """Draw a map product: its areas coloured by their published values.

    Suppressed areas are hatched grey and listed in the legend as "suppressed (not zero)";
    areas of the boundary file with no row are white, "no data". The caption says how many are
    not shown because their area is not known (or that this is suppressed), lists the table's
    areas the boundary file has no shape for, states the disclosure rules, and names the
    boundary file by its fingerprint.

    Parameters
    ----------
    product
        A controlled product with :attr:`~oda_fed.products.tables.ProductTable.boundaries`.

    Returns
    -------
    matplotlib.figure.Figure
        A figure attached to an Agg canvas, ready for ``savefig``.

    Raises
    ------
    ProductError
        When the product carries no boundaries.
    """
    boundaries = product.boundaries
    if boundaries is None:
        raise ProductError(f"product '{product.product_id}' is not a map: it has no boundaries")
    dim = product.dims[0]
    rows = {str(row[dim]): row for _, row in product.table.iterrows()}
    unknown = rows.pop(product.unknown_area, None) if product.unknown_area else None
    cmap, norm = scale(product)

    x0, y0, x1, y1 = (float(v) for v in shapely.total_bounds(list(boundaries.shapes.values())))
    # The map's own width is the figure's less the colour bar's; its height follows the shape.
    aspect = _aspect(x0, y0, x1, y1)
    ratio = (y1 - y0) * aspect / max(x1 - x0, 1e-9)
    height_in = float(np.clip(_MAP_WIDTH_IN * ratio, 3.0, 10.0)) + 2.2
    fig = Figure(figsize=(_MAP_WIDTH_IN + 1.5, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for code, geom in sorted(boundaries.shapes.items()):
        row = rows.get(code)
        if row is None:
            style = {"facecolor": NO_DATA_COLOUR, "hatch": NO_DATA_HATCH}
        elif (value := product.value(row)) is None:
            style = {"facecolor": SUPPRESSED_COLOUR, "hatch": SUPPRESSED_HATCH}
        else:
            style = {"facecolor": cmap(norm(value))}
        # The hatch takes the edge colour, so every outline is the same dark grey.
        ax.add_patch(PathPatch(_path(geom), edgecolor=_EDGE, linewidth=0.4, **style))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect(aspect)
    ax.set_axis_off()
    ax.set_title(_plain(product.title))
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=ax,
        shrink=0.6,
        label="share (%)" if product.is_rate else "entities",
    )
    handles = [
        Patch(
            facecolor=SUPPRESSED_COLOUR,
            hatch=SUPPRESSED_HATCH,
            edgecolor=_EDGE,
            label="suppressed (not zero)",
        ),
        Patch(
            facecolor=NO_DATA_COLOUR,
            hatch=NO_DATA_HATCH,
            edgecolor=_EDGE,
            label="no data (no row in the table)",
        ),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.01), fontsize="small")
    missing = {code: row for code, row in rows.items() if code not in boundaries.shapes}
    fig.supxlabel(
        _plain(_caption(product, unknown=unknown, missing=missing)),
        fontsize="small",
        ha="left",
        x=0.02,
    )
    return fig


def _caption(
    product: ProductTable, *, unknown: pd.Series | None, missing: dict[str, pd.Series]
) -> str:
    """What the map cannot show, the rules, and which boundaries it was drawn on."""
    drawn_on = product.boundaries
    assert drawn_on is not None  # draw_map checked
    lines = []
    if unknown is not None:
        lines.append(_not_shown(product, unknown))
    if missing:
        named = [f"{label(code)} ({_said(product, row)})" for code, row in sorted(missing.items())]
        more = len(named) - _LISTED
        lines.append(
            f"Not drawn, no boundary in '{drawn_on.name}': "
            + ", ".join(named[:_LISTED])
            + (f" and {more} more (in the table)" if more > 0 else "")
        )
    lines.append(product.describe_rules())
    lines.append(
        f"Boundaries: {drawn_on.name} ({drawn_on.path.name}, {drawn_on.fingerprint[:19]}…)"
    )
    return "\n".join(textwrap.fill(line, _WRAP) for line in lines)


def _not_shown(product: ProductTable, row: pd.Series) -> str:
    """The caption line for the row of entities whose area is not known."""
    if product.is_rate:
        return f"Not shown: area not known ({_said(product, row)})"
    if bool(row["suppressed"]):
        return "Not shown: area not known (suppressed)"
    return f"{int(row['count']):,} not shown: area not known"


def _said(product: ProductTable, row: pd.Series) -> str:
    """A row's published value in words: a count, a share of a denominator, or suppressed."""
    value = product.value(row)
    if value is None:
        return "suppressed"
    if product.is_rate:
        return f"{value:.1f}% of {int(row['denominator']):,}"
    return f"{int(value):,}"


def _aspect(x0: float, y0: float, x1: float, y1: float) -> float:
    """Longitude and latitude (as GeoJSON has them) are drawn with a degree of longitude as
    wide as it is on the ground there; projected coordinates (metres) are drawn equal."""
    if -90.0 <= y0 <= y1 <= 90.0 and -180.0 <= x0 <= x1 <= 180.0:
        return 1.0 / max(math.cos(math.radians((y0 + y1) / 2)), 0.05)
    return 1.0


def _parts(geom: BaseGeometry) -> list[Polygon]:
    return list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]  # type: ignore[list-item]


def _path(geom: BaseGeometry) -> MplPath:
    """One compound path of every part of an area and its holes.

    Each exterior runs anticlockwise and each hole clockwise, so a hole stays empty whichever
    fill rule the renderer applies.
    """
    vertices, codes = [], []
    for polygon in _parts(geom):
        polygon = orient(polygon, sign=1.0)
        for ring in (polygon.exterior, *polygon.interiors):
            xy = np.asarray(ring.coords, dtype=float)[:, :2]
            vertices.append(xy)
            codes += [MplPath.MOVETO] + [MplPath.LINETO] * (len(xy) - 2) + [MplPath.CLOSEPOLY]
    return MplPath(np.concatenate(vertices), codes)
