"""Charts of data products, drawn with the Agg canvas directly.

``matplotlib.pyplot`` is never imported: it picks a global backend and keeps figures alive in a
global registry, neither of which a server process wants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from oda_fed.disclosure import SUPPRESSED_COLUMN
from oda_fed.products.tables import ProductTable

__all__ = ["PNG_SIGNATURE", "draw_product", "write_chart"]

#: The eight bytes every PNG file starts with.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_DPI = 100


def draw_product(product: ProductTable) -> Figure:
    """Draw grouped bars: one group per area, one bar per number of partners.

    Suppressed cells get no bar (any height would hint at the hidden value) but a cross on the
    axis, listed in the legend, so a reader sees "suppressed" rather than "zero". The rules are
    stated in a caption under the chart.

    Parameters
    ----------
    product
        A controlled product table.

    Returns
    -------
    matplotlib.figure.Figure
        A figure attached to an Agg canvas, ready for ``savefig``.

    Examples
    --------
    >>> import pandas as pd
    >>> from oda_fed.disclosure import DisclosureRules
    >>> from oda_fed.products.tables import partner_count_by_area
    >>> product = partner_count_by_area(
    ...     entity_partners=pd.Series([1] * 12), entity_area=pd.Series(["W1"] * 12),
    ...     product_id="p", title="Known to services", rules=DisclosureRules(), n_partners=2)
    >>> draw_product(product).axes[0].get_title()
    'Known to services'
    """
    table = product.table
    areas = list(dict.fromkeys(table["area"].tolist()))
    partner_values = sorted(set(table["partners"].tolist()))
    # Entities with no area are usually far more numerous than any one area; on a shared scale
    # they would flatten every other bar, so they get a panel with a scale of their own.
    apart = [a for a in areas if a == product.unknown_area]
    areas = [a for a in areas if a != product.unknown_area]
    n_areas = len(areas)

    width_in = float(np.clip(3.0 + 0.9 * (n_areas + len(apart)), 6.0, 24.0))
    fig = Figure(figsize=(width_in, 5.0), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if apart and areas:
        ax, ax_apart = fig.subplots(1, 2, width_ratios=[max(n_areas, 1), 1.6])
    else:
        ax, ax_apart = fig.add_subplot(), None
        areas = areas + apart

    handles = _bars(ax, table, areas, partner_values, product)
    ax.set_title(_plain(product.title))
    crowded = len(areas) > 6
    ax.set_xticks(
        np.arange(len(areas), dtype=float),
        [_plain(a) for a in areas],
        rotation=45 if crowded else 0,
        ha="right" if crowded else "center",
    )
    ax.set_xlabel("area")
    ax.set_ylabel("entities")
    if ax_apart is not None:
        _bars(ax_apart, table, apart, partner_values, product)
        ax_apart.set_xticks([0.0], [_plain(apart[0])])
        ax_apart.set_title("own scale", fontsize="small")
    ax.legend(*handles, fontsize="small")
    fig.supxlabel(_plain(product.describe_rules()), fontsize="small")
    return fig


def _bars(
    ax, table: pd.DataFrame, areas: list[str], partner_values: list[int], product: ProductTable
) -> tuple[list, list[str]]:
    """Grouped bars for ``areas`` on ``ax``; suppressed cells get a cross on the axis, no bar."""
    x = np.arange(len(areas), dtype=float)
    n_groups = max(len(partner_values), 1)
    bar_width = 0.8 / n_groups
    cmap = _palette(n_groups)
    top = 0
    handles, labels = [], []
    marked = False
    for j, partners in enumerate(partner_values):
        rows = table[table["partners"] == partners].set_index("area").reindex(areas)
        counts = rows["count"].fillna(0).to_numpy(dtype=np.int64)
        suppressed = rows[SUPPRESSED_COLUMN].fillna(False).to_numpy(dtype=bool)
        offset = x - 0.4 + bar_width * (j + 0.5)
        label = f"known to {partners} partner" + ("" if partners == 1 else "s")
        handles.append(ax.bar(offset, counts, width=bar_width, color=cmap[j]))
        labels.append(label)
        if suppressed.any():
            cross = ax.scatter(
                offset[suppressed],
                np.zeros(int(suppressed.sum())),
                marker="x",
                color="#b00020",
                zorder=3,
                clip_on=False,
            )
            if not marked:
                handles.insert(0, cross)
                labels.insert(0, "suppressed")
                marked = True
        top = max(top, int(counts.max(initial=0)))
    ax.set_ylim(0, max(top * 1.15, product.rules.min_cell, 1))
    return handles, labels


def write_chart(product: ProductTable, path: Path) -> Path:
    """Draw the product and save it as a PNG at ``path``.

    Examples
    --------
    >>> import pandas as pd, tempfile
    >>> from oda_fed.disclosure import DisclosureRules
    >>> from oda_fed.products.tables import partner_count_by_area
    >>> product = partner_count_by_area(
    ...     entity_partners=pd.Series([1]), entity_area=pd.Series(["W1"]),
    ...     product_id="p", title="t", rules=DisclosureRules(), n_partners=1)
    >>> out = write_chart(product, Path(tempfile.mkdtemp()) / "p.png")
    >>> out.read_bytes()[:8] == PNG_SIGNATURE
    True
    """
    fig = draw_product(product)
    # No "Software" stamp: the same product gives the same bytes whatever matplotlib wrote it.
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    return path


def _plain(text: str) -> str:
    # Matplotlib reads "$...$" as mathtext; an area code with dollars must print as written.
    return text.replace("$", r"\$")


def _palette(n: int) -> list[tuple[float, float, float, float]]:
    cmap = colormaps["viridis"]
    return [cmap(v) for v in np.linspace(0.15, 0.85, n)] if n > 1 else [cmap(0.4)]
