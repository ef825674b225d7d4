"""A released product read back from its CSV file, in the shape people read it: areas by count.

The file is what recipients get (see :func:`~oda_fed.products.write_product`): one row per
(area, number of partners) cell. Readers want the cross-tabulation, with a suppressed cell shown
as the word ``suppressed``, never as 0 or blank.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from oda_fed.disclosure import SUPPRESSED_COLUMN
from oda_fed.products.export import SUPPRESSED
from oda_fed.products.tables import PRODUCT_COLUMNS, ProductError

__all__ = ["SUPPRESSED", "ReleasedCounts", "read_released_counts"]


@dataclass(frozen=True, eq=False)
class ReleasedCounts:
    """A released partner-count-by-area product, cross-tabulated.

    Compared by identity (``eq=False``): a DataFrame has no single truth value.

    Attributes
    ----------
    table
        One row per area (sorted), one column per number of partners that know a resident
        (``int``, ascending). A cell is the published count as text, ``"suppressed"``, or
        ``""`` where the file has no such cell.
    cells
        Cells in the file.
    suppressed_cells
        Of them, how many are suppressed.
    """

    table: pd.DataFrame
    cells: int
    suppressed_cells: int


def read_released_counts(path: Path) -> ReleasedCounts:
    """Read a released partner-count-by-area CSV and cross-tabulate it.

    Parameters
    ----------
    path
        A product CSV with the columns ``area,partners,count,suppressed``. A cell is suppressed
        when its ``suppressed`` column is ``true`` or its count is the word ``suppressed``.

    Returns
    -------
    ReleasedCounts

    Raises
    ------
    ProductError
        When the file lacks one of those columns.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "p.csv"
    >>> _ = path.write_text("area,partners,count,suppressed\\nW1,1,15,false\\nW1,2,,true\\n")
    >>> released = read_released_counts(path)
    >>> released.table.loc["W1"].tolist(), released.suppressed_cells
    (['15', 'suppressed'], 1)
    """
    cells = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in PRODUCT_COLUMNS if c not in cells.columns]
    if missing:
        raise ProductError(f"{path}: not a released product table; it lacks {missing}")
    suppressed = (cells[SUPPRESSED_COLUMN].str.lower() == "true") | (cells["count"] == SUPPRESSED)
    shown = cells["count"].where(~suppressed, SUPPRESSED)
    table = (
        cells.assign(count=shown, partners=cells["partners"].astype(int))
        .pivot(index="area", columns="partners", values="count")
        .fillna("")
    )
    table.columns.name = None
    return ReleasedCounts(table=table, cells=len(cells), suppressed_cells=int(suppressed.sum()))
