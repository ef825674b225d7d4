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

from oda_fed.products.tables import ProductTable
from oda_fed.transport.protocol import printable

__all__ = ["PNG_SIGNATURE", "draw_product", "label", "write_chart"]

#: The eight bytes every PNG file starts with.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_DPI = 100
#: Characters of a label drawn on a chart or map; a longer one is cut, with an ellipsis.
LABEL_CHARS = 40


def draw_product(product: ProductTable) -> Figure:
    """Draw grouped bars: one group per value of the first dimension (the area, say), one bar
    per combination of the others (the number of partners, say). A rate is drawn in percent.

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
    first = product.dims[0]
    groups = list(dict.fromkeys(product.table[first].tolist()))
    # Entities with no value are usually far more numerous than any one group; on a shared scale
    # they would flatten every other bar, so they get a panel with a scale of their own.
    apart = [g for g in groups if g == product.unknown_area]
    groups = [g for g in groups if g != product.unknown_area]

    width_in = float(np.clip(3.0 + 0.9 * (len(groups) + len(apart)), 6.0, 24.0))
    fig = Figure(figsize=(width_in, 5.0), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if apart and groups:
        ax, ax_apart = fig.subplots(1, 2, width_ratios=[max(len(groups), 1), 1.6])
    else:
        ax, ax_apart = fig.add_subplot(), None
        groups = groups + apart

    handles = _bars(ax, groups, product)
    ax.set_title(_plain(product.title))
    crowded = len(groups) > 6
    ax.set_xticks(
        np.arange(len(groups), dtype=float),
        [_plain(label(product.label((first,), (g,)))) for g in groups],
        rotation=45 if crowded else 0,
        ha="right" if crowded else "center",
    )
    ax.set_xlabel(first.rpartition(".")[2])
    ax.set_ylabel("share (%)" if product.is_rate else "entities")
    if ax_apart is not None:
        _bars(ax_apart, apart, product)
        ax_apart.set_xticks([0.0], [_plain(label(str(apart[0])))])
        ax_apart.set_title("own scale", fontsize="small")
    ax.legend(*handles, fontsize="small")
    fig.supxlabel(_plain(product.describe_rules()), fontsize="small")
    return fig


def _bars(ax, groups: list[object], product: ProductTable) -> tuple[list, list[str]]:
    """Grouped bars for ``groups`` on ``ax``; suppressed cells get a cross on the axis, no bar."""
    table = product.table
    first, rest = product.dims[0], list(product.dims[1:])
    series = product.series()
    x = np.arange(len(groups), dtype=float)
    bar_width = 0.8 / max(len(series), 1)
    cmap = _palette(max(len(series), 1))
    top = 0.0
    handles, labels = [], []
    marked = False
    for j, combo in enumerate(series):
        mask = np.ones(len(table), dtype=bool)
        for dim, value in zip(rest, combo, strict=True):
            mask &= (table[dim] == value).to_numpy()
        rows = table[mask].set_index(first).reindex(groups)
        values = [
            product.value(row) if not row.isna().all() else None for _, row in rows.iterrows()
        ]
        hidden = np.array([v is None for v in values])
        heights = np.array([0.0 if v is None else v for v in values])
        offset = x - 0.4 + bar_width * (j + 0.5)
        handles.append(ax.bar(offset, heights, width=bar_width, color=cmap[j]))
        labels.append(_plain(label(product.label(tuple(rest), combo)) if rest else product.title))
        if hidden.any():
            cross = ax.scatter(
                offset[hidden],
                np.zeros(int(hidden.sum())),
                marker="x",
                color="#b00020",
                zorder=3,
                clip_on=False,
            )
            if not marked:
                handles.insert(0, cross)
                labels.insert(0, "suppressed")
                marked = True
        top = max(top, float(heights.max(initial=0)))
    floor = 1 if product.is_rate else max(product.rules.min_cell, 1)
    ax.set_ylim(0, max(top * 1.15, floor))
    return handles, labels


def write_chart(product: ProductTable, path: Path) -> Path:
    """Draw the product (a map when it has boundaries) and save it as a PNG at ``path``.

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
    if product.boundaries is not None:
        from oda_fed.products.maps import draw_map  # maps.py imports this module

        fig = draw_map(product)
    else:
        fig = draw_product(product)
    # No "Software" stamp: the same product gives the same bytes whatever matplotlib wrote it.
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    return path


def label(text: str) -> str:
    """A value drawn as a label: at most :data:`LABEL_CHARS` characters, control characters
    escaped. Values arrive from nodes; drawing a long one costs time and memory out of all
    proportion (and a label is a code or a band, never a paragraph).

    Examples
    --------
    >>> label("E05000001")
    'E05000001'
    >>> len(label("x" * 2_000_000))
    40
    """
    text = printable(text[: 4 * LABEL_CHARS])
    if len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1] + "…"
    return text


def _plain(text: str) -> str:
    # Matplotlib reads "$...$" as mathtext; an area code with dollars must print as written.
    return text.replace("$", r"\$")


def _palette(n: int) -> list[tuple[float, float, float, float]]:
    cmap = colormaps["viridis"]
    return [cmap(v) for v in np.linspace(0.15, 0.85, n)] if n > 1 else [cmap(0.4)]
