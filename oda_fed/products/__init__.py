"""Data products: controlled tables, their CSV and PNG files, and the HTML round report.

Every table is put through :mod:`oda_fed.disclosure` when it is built, so nothing uncontrolled
reaches a file.
"""

from oda_fed.products.export import write_product
from oda_fed.products.released import ReleasedCounts, read_released_counts
from oda_fed.products.report import render_report
from oda_fed.products.tables import ProductError, ProductTable, partner_count_by_area

__all__ = [
    "ProductError",
    "ProductTable",
    "ReleasedCounts",
    "partner_count_by_area",
    "read_released_counts",
    "render_report",
    "write_product",
]
