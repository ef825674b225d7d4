"""``local`` products: a table of one partner's own records, made at that partner's node.

The owner's node tabulates its records by the product's dimensions, in the product's cohort, and
puts the table through disclosure control with its own rounding key and release ledger (a
:class:`~oda_fed.products.releases.Releases` in the node's state folder), by the same code as
every other table (:func:`~oda_fed.products.build.build_products`), every local product of that
partner together (:func:`build_local`). Only the controlled table
leaves the node: one cell per combination, each a published count or suppressed, and never a
value per record.

The coordinator checks what it receives (:func:`received_table`) before keeping it: every
combination once, values inside their domains, and every published count rounded and at least
``min_cell``. A node that sends a table it did not control is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.config import LOCAL, AttributeRef, Product, Project
from oda_fed.disclosure import SUPPRESSED_COLUMN, DisclosureReport, DisclosureRules
from oda_fed.products.build import Population, build_products, listed_values
from oda_fed.products.crosstab import NOT_KNOWN, ProductError
from oda_fed.products.releases import Controlled, Releases
from oda_fed.products.tables import ProductTable
from oda_fed.transport.protocol import MAX_VALUE_CHARS

__all__ = ["Cell", "build_local", "local_population", "received_table", "table_cells"]

#: One cell of a local table as it crosses: its coordinates (a value per dimension, in the
#: product's order) and its published count, or None where it is suppressed.
Cell = tuple[tuple[str, ...], int | None]


def local_population(
    prod: Product, *, record_ids: Sequence[str], values: Mapping[str, Sequence[str]]
) -> Population:
    """The owner's records as a population to tabulate: each record counts once, as known to one
    partner. ``values`` gives each attribute the product needs (by name) a value per record."""
    index = pd.Index([str(r) for r in record_ids], dtype=object)
    return Population(
        partners=pd.Series(np.ones(len(index), dtype=np.int64), index=index),
        values={
            str(ref): pd.Series(list(values[ref.name]), index=index, dtype=object)
            for ref in prod.attributes()
        },
    )


def build_local(
    project: Project,
    owner: str,
    *,
    record_ids: Sequence[str],
    values: Mapping[str, Sequence[str]],
    releases: Releases,
    release_id: str,
    report_dir: Path,
) -> dict[str, Controlled]:
    """Every local product ``owner`` computes, tabulated over its records and controlled
    together (so that no suppressed cell of one can be worked out from another), by product id.
    ``values`` gives each attribute a value per record, in the order of ``record_ids``."""
    items = [
        (prod, local_population(prod, record_ids=record_ids, values=values))
        for prod in project.products
        if prod.kind == LOCAL and prod.owner == owner
    ]
    return build_products(
        project, items, releases=releases, release_id=release_id, report_dir=report_dir
    )


def table_cells(product: ProductTable) -> list[Cell]:
    """A controlled table's cells as they cross to the coordinator."""
    columns = [*product.dims, "count", SUPPRESSED_COLUMN]
    return [
        (tuple(str(v) for v in row[:-2]), None if row[-1] else int(row[-2]))
        for row in product.table[columns].itertuples(index=False, name=None)
    ]


def received_table(project: Project, prod: Product, cells: Sequence[Cell]) -> ProductTable:
    """A local product's table as its owner's node sent it, checked as the coordinator must.

    Raises
    ------
    ProductError
        The table is not a controlled table of ``prod``: a combination missing or repeated, a
        value outside its dimension's domain, or a published count below ``min_cell`` or not
        rounded. The message gives counts of cells, never their values.
    """
    if prod.kind != LOCAL:
        raise ProductError(f"product '{prod.id}' is a {prod.kind}, not a local product")
    dims = prod.dimensions
    rules = DisclosureRules(
        min_cell=project.min_cell(), rounding_base=project.disclosure.rounding_base
    )
    if not cells:
        raise ProductError(f"the table of '{prod.id}' has no cells")
    long = sum(1 for coordinates, _ in cells for c in coordinates if len(c) > MAX_VALUE_CHARS)
    if long:
        raise ProductError(
            f"{long} coordinate(s) are longer than {MAX_VALUE_CHARS} characters, longer than "
            "any code or band"
        )
    wrong = sum(1 for coordinates, _ in cells if len(coordinates) != len(dims))
    if wrong:
        raise ProductError(
            f"{wrong} cell(s) do not have one value for each of the {len(dims)} dimension(s) "
            f"({', '.join(dims)})"
        )
    frame = pd.DataFrame([c for c, _ in cells], columns=dims, dtype=object)
    repeated = int(frame.duplicated().sum())
    if repeated:
        raise ProductError(f"{repeated} cell(s) repeat a combination of {', '.join(dims)}")
    sizes = [_check_dimension(project, d, frame[d]) for d in dims]
    if len(frame) != math.prod(sizes):
        raise ProductError(
            f"the table has {len(frame)} cells, but every combination of {', '.join(dims)} makes "
            f"{math.prod(sizes)}: a table must have every cell, so a missing one cannot say "
            "'nobody'"
        )
    counts = [count for _, count in cells]
    shown = np.array([c for c in counts if c is not None], dtype=np.int64)
    small = int(np.count_nonzero(shown < rules.min_cell))
    if small:
        raise ProductError(
            f"{small} published count(s) are below min_cell {rules.min_cell}: a local table "
            "must be suppressed at its node before it is sent"
        )
    frame["count"] = pd.array(counts, dtype="Int64")
    frame[SUPPRESSED_COLUMN] = np.array([c is None for c in counts], dtype=bool)
    return ProductTable(
        product_id=prod.id,
        title=prod.title,
        table=frame,
        rules=rules,
        suppressed_cells=int(frame[SUPPRESSED_COLUMN].sum()),
        unknown_area=NOT_KNOWN,
        # Controlled at the node, with its key: each cell's decision stays there.
        report=DisclosureReport(rules=rules, keyed=True, cells=(), exposed=()),
        dims=tuple(dims),
    )


def _check_dimension(project: Project, dim: str, given: pd.Series) -> int:
    """Check a dimension's values; return how many categories it has in the table."""
    ref = AttributeRef.parse(dim)
    listed = listed_values(project, ref)
    if listed is not None:
        outside = int((~given.isin([*listed, NOT_KNOWN])).sum())
        if outside:
            raise ProductError(f"{outside} cell(s) give {dim} a value it does not list")
        return len(listed) + 1
    problem = project.attribute(partner=ref.partner, name=ref.name).problem(
        [v for v in given if v != NOT_KNOWN]
    )
    if problem:
        raise ProductError(problem)
    return len(set(given) | {NOT_KNOWN})
