"""Write a controlled product to the files that are released: a CSV table, a PNG chart and an
HTML page."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from oda_fed.disclosure import SUPPRESSED_COLUMN
from oda_fed.products.charts import write_chart
from oda_fed.products.note import Provenance
from oda_fed.products.pages import write_product_page
from oda_fed.products.tables import ProductTable

#: What a suppressed cell shows instead of a count.
SUPPRESSED = "suppressed"

__all__ = ["write_product"]

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def write_product(
    product: ProductTable, out_dir: Path, *, provenance: Provenance | None = None
) -> dict[str, Path]:
    """Write ``<product_id>.csv``, ``<product_id>.png`` and ``<product_id>.html`` into ``out_dir``.

    The CSV has a column per dimension (``area,partners`` for residents by area and number of
    partners), then ``count`` and ``suppressed``; a rate adds ``denominator`` and ``rate``. A
    suppressed cell's count is the word ``suppressed`` (and ``suppressed`` is ``true``), never
    ``0`` or blank: zero is a value, suppressed is the absence of one. A rate is suppressed
    where its count or denominator is. A label that a spreadsheet would run as a formula
    (starting with ``= + - @``, tab or carriage return) is written with a leading ``'``.

    The HTML page (:func:`~oda_fed.products.pages.write_product_page`) shows the chart, the table
    and a note for a reader who is not an analyst: what suppression and rounding mean, why a
    value can be "not known", and, given ``provenance``, where the figures came from.

    Parameters
    ----------
    product
        The controlled product.
    out_dir
        Folder to write into; created if missing. Existing files of the same names are
        replaced.
    provenance
        The project, release and time the figures come from, for the page's note.

    Returns
    -------
    dict[str, Path]
        ``{"csv": ..., "png": ..., "html": ...}``.

    Examples
    --------
    >>> import pandas as pd, tempfile
    >>> from oda_fed.disclosure import DisclosureRules
    >>> from oda_fed.products.tables import partner_count_by_area
    >>> product = partner_count_by_area(
    ...     entity_partners=pd.Series([1]), entity_area=pd.Series(["W1"]),
    ...     product_id="p", title="t", rules=DisclosureRules(), n_partners=1)
    >>> paths = write_product(product, Path(tempfile.mkdtemp()))
    >>> paths["csv"].read_text().splitlines()[:2]
    ['area,partners,count,suppressed', 'W1,1,suppressed,true']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{product.product_id}.csv"
    png_path = out_dir / f"{product.product_id}.png"
    _write_csv(product, csv_path)
    write_chart(product, png_path)
    html_path = write_product_page(
        product,
        out_dir / f"{product.product_id}.html",
        chart=png_path,
        csv_name=csv_path.name,
        provenance=provenance,
    )
    return {"csv": csv_path, "png": png_path, "html": html_path}


def _write_csv(product: ProductTable, path: Path) -> None:
    table = product.table
    columns = product.columns
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in table[list(columns)].itertuples(index=False, name=None):
            cells = dict(zip(columns, row, strict=True))
            out = [_safe_cell(str(cells[d])) for d in product.dims]
            hidden = bool(cells[SUPPRESSED_COLUMN])
            out += [SUPPRESSED if hidden else int(cells["count"]), "true" if hidden else "false"]
            if product.is_rate:
                denominator, rate = cells["denominator"], cells["rate"]
                out.append(SUPPRESSED if pd.isna(denominator) else int(denominator))
                out.append(SUPPRESSED if pd.isna(rate) else f"{rate:.4f}")
            writer.writerow(out)


def _safe_cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text
