"""Write a controlled product to the files that are released: a CSV table and a PNG chart."""

from __future__ import annotations

import csv
from pathlib import Path

from oda_fed.disclosure import SUPPRESSED_COLUMN
from oda_fed.products.charts import write_chart
from oda_fed.products.tables import PRODUCT_COLUMNS, ProductTable

__all__ = ["write_product"]

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def write_product(product: ProductTable, out_dir: Path) -> dict[str, Path]:
    """Write ``<product_id>.csv`` and ``<product_id>.png`` into ``out_dir``.

    The CSV has the columns ``area,partners,count,suppressed``. A suppressed cell has an
    empty count and ``suppressed`` = ``true``, never ``0``: zero is a value, suppressed is the
    absence of one. An area label that a spreadsheet would run as a formula (starting with
    ``= + - @``, tab or carriage return) is written with a leading ``'``.

    Parameters
    ----------
    product
        The controlled product.
    out_dir
        Folder to write into; created if missing. Existing files of the same names are
        replaced.

    Returns
    -------
    dict[str, Path]
        ``{"csv": ..., "png": ...}``.

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
    ['area,partners,count,suppressed', 'W1,1,,true']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{product.product_id}.csv"
    png_path = out_dir / f"{product.product_id}.png"
    _write_csv(product, csv_path)
    write_chart(product, png_path)
    return {"csv": csv_path, "png": png_path}


def _write_csv(product: ProductTable, path: Path) -> None:
    table = product.table
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PRODUCT_COLUMNS)
        for area, partners, count, suppressed in zip(
            table["area"].tolist(),
            table["partners"].tolist(),
            table["count"].tolist(),
            table[SUPPRESSED_COLUMN].tolist(),
            strict=True,
        ):
            writer.writerow(
                [
                    _safe_cell(str(area)),
                    int(partners),
                    "" if suppressed else int(count),
                    "true" if suppressed else "false",
                ]
            )


def _safe_cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text
