"""Charts of data products, drawn with the Agg canvas directly.

``matplotlib.pyplot`` is never imported: it picks a global backend and keeps figures alive in a
global registry, neither of which a server process wants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
    n_areas, n_groups = len(areas), max(len(partner_values), 1)

    width_in = float(np.clip(3.0 + 0.9 * n_areas, 6.0, 24.0))
    fig = Figure(figsize=(width_in, 5.0), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    x = np.arange(n_areas, dtype=float)
    bar_width = 0.8 / n_groups
    cmap = _palette(n_groups)
    top = 0
    marked = False
    for j, partners in enumerate(partner_values):
        rows = table[table["partners"] == partners].set_index("area").reindex(areas)
        counts = rows["count"].fillna(0).to_numpy(dtype=np.int64)
        suppressed = rows[SUPPRESSED_COLUMN].fillna(False).to_numpy(dtype=bool)
        offset = x - 0.4 + bar_width * (j + 0.5)
        label = f"known to {partners} partner" + ("" if partners == 1 else "s")
        ax.bar(offset, counts, width=bar_width, label=label, color=cmap[j])
        if suppressed.any():
            ax.scatter(
                offset[suppressed],
                np.zeros(int(suppressed.sum())),
                marker="x",
                color="#b00020",
                zorder=3,
                clip_on=False,
                label=None if marked else "suppressed",
            )
            marked = True
        top = max(top, int(counts.max(initial=0)))

    ax.set_title(_plain(product.title))
    crowded = n_areas > 6
    ax.set_xticks(
        x,
        [_plain(a) for a in areas],
        rotation=45 if crowded else 0,
        ha="right" if crowded else "center",
    )
    ax.set_xlabel("area")
    ax.set_ylabel("entities")
    ax.set_ylim(0, max(top * 1.15, product.rules.min_cell, 1))
    ax.legend(fontsize="small")
    fig.supxlabel(_plain(product.rules.describe()), fontsize="small")
    return fig


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
