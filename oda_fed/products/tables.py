"""Data product tables built from the linked index, disclosure-controlled at construction."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from oda_fed.disclosure import (
    SUPPRESSED_COLUMN,
    DisclosureReport,
    DisclosureRules,
    KnownTotal,
    LedgerHold,
    control_table,
    known_totals,
)
from oda_fed.products.crosstab import MAX_DIMENSIONS, Dimension, ProductError, count_cells

if TYPE_CHECKING:
    from oda_fed.products.boundaries import Boundaries

__all__ = [
    "PRODUCT_COLUMNS",
    "RATE_COLUMNS",
    "ProductError",
    "ProductTable",
    "area_row_totals",
    "controlled_product",
    "partner_count_by_area",
    "partner_count_cells",
    "partner_totals",
    "rate_product",
]

#: Columns of a :class:`ProductTable` of residents by area and number of partners, in order.
PRODUCT_COLUMNS = ("area", "partners", "count", SUPPRESSED_COLUMN)
#: The columns a rate adds: its controlled denominator, and numerator over denominator as
#: published (NaN where either is suppressed).
RATE_COLUMNS = ("denominator", "rate")

# The product id names files on disk: no separators, no leading dot, nothing a shell mangles.
_PRODUCT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True, eq=False)
class ProductTable:
    """A disclosure-controlled table, ready for release.

    Compared by identity (``eq=False``): a DataFrame has no single truth value.

    Parameters
    ----------
    product_id
        Short identifier from the project, used as the file stem (letters, digits, ``_.-``).
    title
        Human title for the chart and the report.
    table
        The controlled table: columns ``area`` (str), ``partners`` (int), ``count`` (``Int64``,
        ``<NA>`` where suppressed) and ``suppressed`` (bool).
    rules
        The rules the table was controlled with.
    suppressed_cells
        How many cells are suppressed; must match ``table["suppressed"]``.

    Raises
    ------
    ProductError
        When the table does not look controlled: missing columns, a published count that is not
        a multiple of the rounding base, a count present in a suppressed cell, or a wrong
        ``suppressed_cells``.

    Examples
    --------
    >>> product = partner_count_by_area(
    ...     entity_partners=pd.Series([1] * 12, index=range(12)),
    ...     entity_area=pd.Series(["E05000001"] * 12, index=range(12)),
    ...     product_id="known_to_services", title="Known to services",
    ...     rules=DisclosureRules(), n_partners=2)
    >>> product.suppressed_cells  # the council knows its 12: publishing them gives the 0 away
    4
    """

    product_id: str
    title: str
    table: pd.DataFrame
    rules: DisclosureRules
    suppressed_cells: int
    #: The area label for entities with no area, if the table has such rows (charted apart).
    unknown_area: str | None = None
    #: Each cell's decision, for the coordinator's operator; never released.
    report: DisclosureReport | None = None
    #: The cells the release ledger held (for :meth:`~oda_fed.disclosure.ReleaseLedger.record`).
    held: np.ndarray | None = None
    #: The dimension columns, in order; the first is charted along the axis.
    dims: tuple[str, ...] = ("area", "partners")
    #: For a map: the boundaries its one dimension's areas are drawn on (a chart otherwise).
    boundaries: Boundaries | None = None

    def series(self) -> list[tuple[object, ...]]:
        """The combinations of every dimension but the first, in table order (what a chart
        draws as bars within a group, and a report as columns)."""
        rest = list(self.dims[1:])
        if not rest:
            return [()]
        return list(dict.fromkeys(self.table[rest].itertuples(index=False, name=None)))

    def label(self, dims: tuple[str, ...], values: tuple[object, ...]) -> str:
        """How a reader is shown one combination of dimension values.

        Examples
        --------
        >>> product = partner_count_by_area(
        ...     entity_partners=pd.Series([1]), entity_area=pd.Series(["W1"]),
        ...     product_id="p", title="t", rules=DisclosureRules(), n_partners=2)
        >>> product.label(("partners",), (2,)), product.label(("council.age",), ("65+",))
        ('known to 2 partners', 'age 65+')
        """
        parts = []
        for dim, value in zip(dims, values, strict=True):
            if dim == "partners":
                parts.append(f"known to {value} partner" + ("" if str(value) == "1" else "s"))
            else:
                parts.append(f"{dim.rpartition('.')[2]} {value}" if dim != "area" else str(value))
        return ", ".join(parts)

    def value(self, row: pd.Series) -> float | None:
        """A cell's published value: its count, or for a rate the share in percent; None when
        suppressed."""
        if self.is_rate:
            return None if pd.isna(row["rate"]) else 100.0 * float(row["rate"])
        return None if bool(row[SUPPRESSED_COLUMN]) else float(row["count"])

    @property
    def is_rate(self) -> bool:
        return all(c in self.table.columns for c in RATE_COLUMNS)

    @property
    def columns(self) -> tuple[str, ...]:
        """The released columns, in order."""
        return (*self.dims, "count", SUPPRESSED_COLUMN, *(RATE_COLUMNS if self.is_rate else ()))

    def describe_rules(self) -> str:
        """The rules as applied to this table, in plain sentences for captions."""
        keyed = self.report is not None and self.report.keyed
        return self.rules.describe(keyed=keyed, protected=self.report is not None)

    def __post_init__(self) -> None:
        if not _PRODUCT_ID.fullmatch(self.product_id):
            raise ProductError(
                "product_id must be 1-100 letters, digits, '_', '.' or '-', starting with a "
                "letter or digit"
            )
        missing = [c for c in self.columns if c not in self.table.columns]
        if missing:
            raise ProductError(f"product table lacks column(s) {missing}")
        if not 1 <= len(self.dims) <= MAX_DIMENSIONS:
            raise ProductError(f"a product has 1 to {MAX_DIMENSIONS} dimensions")
        if self.boundaries is not None and len(self.dims) != 1:
            raise ProductError("a map has one dimension: the area its boundaries draw")
        if str(self.table["count"].dtype) != "Int64":
            raise ProductError("product table count column must be nullable Int64")
        if not pd.api.types.is_bool_dtype(self.table[SUPPRESSED_COLUMN].dtype):
            raise ProductError("product table suppressed column must be boolean")
        suppressed = self.table[SUPPRESSED_COLUMN].to_numpy(dtype=bool)
        absent = self.table["count"].isna().to_numpy()
        if not np.array_equal(suppressed, absent):
            raise ProductError("product table counts must be missing exactly where suppressed")
        published = self.table["count"].dropna().to_numpy(dtype=np.int64)
        if np.any(published % self.rules.rounding_base != 0):
            raise ProductError("product table has counts not rounded under its rules")
        if int(suppressed.sum()) != self.suppressed_cells:
            raise ProductError("suppressed_cells does not match the table")
        if self.is_rate:
            shown = self.table["denominator"].dropna().to_numpy(dtype=np.int64)
            if np.any(shown % self.rules.rounding_base != 0):
                raise ProductError("product table has denominators not rounded under its rules")
            hidden = self.table["denominator"].isna().to_numpy() | suppressed
            if not np.array_equal(hidden, self.table["rate"].isna().to_numpy()):
                raise ProductError("a rate must be missing exactly where a count is")


def partner_count_by_area(
    *,
    entity_partners: pd.Series,
    entity_area: pd.Series,
    product_id: str,
    title: str,
    rules: DisclosureRules,
    n_partners: int,
    unknown_area: str = "area not known",
    areas: Sequence[str] | None = None,
) -> ProductTable:
    """Count entities by the number of partners that know them, broken down by area, and
    control the table (:func:`partner_count_cells`, then :func:`controlled_product` with the
    area partner's row totals as known totals).

    "Residents known to 1, 2 or 3 services, by ward." Rounding is half up; the coordinator
    keys it and consults its release ledger through :func:`controlled_product` directly.

    Examples
    --------
    >>> partners = pd.Series([1, 2, 2], index=["e1", "e2", "e3"])
    >>> area = pd.Series(["W1", "W1"], index=["e1", "e2"])
    >>> product = partner_count_by_area(
    ...     entity_partners=partners, entity_area=area, product_id="p", title="t",
    ...     rules=DisclosureRules(min_cell=0, rounding_base=1), n_partners=2)
    >>> product.table[["area", "partners", "count"]].values.tolist()
    [['W1', 1, 1], ['W1', 2, 1], ['area not known', 1, 0], ['area not known', 2, 1]]
    """
    cells = partner_count_cells(
        entity_partners=entity_partners,
        entity_area=entity_area,
        n_partners=n_partners,
        unknown_area=unknown_area,
        areas=areas,
    )
    return controlled_product(
        cells,
        product_id=product_id,
        title=title,
        rules=rules,
        known=area_row_totals(cells, unknown_area=unknown_area),
        unknown_area=unknown_area,
    )


def controlled_product(
    cells: pd.DataFrame,
    *,
    product_id: str,
    title: str,
    rules: DisclosureRules,
    cell_keys: np.ndarray | None = None,
    known: Sequence[KnownTotal] = (),
    holds: Sequence[LedgerHold] = (),
    unknown_area: str | None = None,
) -> ProductTable:
    """Put true cells through disclosure control (:func:`~oda_fed.disclosure.control_table`):
    small and held cells suppressed, complements so that no ``known`` total gives one back,
    the rest rounded (by ``cell_keys`` when given)."""
    controlled = control_table(
        cells,
        rules=rules,
        dimensions=[c for c in cells.columns if c != "count"],
        cell_keys=cell_keys,
        known_totals=known,
        holds=holds,
    )
    return ProductTable(
        product_id=product_id,
        title=title,
        table=controlled.table,
        rules=rules,
        suppressed_cells=int(controlled.table[SUPPRESSED_COLUMN].sum()),
        unknown_area=unknown_area,
        report=controlled.report,
        held=controlled.held,
        dims=tuple(c for c in cells.columns if c != "count"),
    )


def partner_totals(
    cells: pd.DataFrame, *, held_by: Mapping[str, Sequence[str]], not_known: str
) -> list[KnownTotal]:
    """The totals each partner can work out from its own records: for the dimensions it holds,
    every combination of their known values summed over the other dimensions.

    Conservative: when the cohort filters on something the partner cannot see, it only knows a
    bound, but protecting the exact total costs little and covers the case where it can.

    Parameters
    ----------
    cells
        The table's true cells (dimension columns and ``count``).
    held_by
        Partner to the dimension columns it holds (its attributes).
    not_known
        The label of "no value": a group with it mixes records the partner does not hold.

    Examples
    --------
    >>> cells = pd.DataFrame({"c.ward": ["W1", "W1", "not known", "not known"],
    ...                       "partners": [1, 2, 1, 2], "count": [5, 6, 7, 8]})
    >>> [t.cells for t in partner_totals(cells, held_by={"c": ["c.ward"]}, not_known="not known")]
    [(0, 1)]
    """
    out = []
    for dims in held_by.values():
        if not dims:
            continue
        for total in known_totals(cells, by=list(dims)):
            first = cells.iloc[total.cells[0]]
            if all(first[d] != not_known for d in dims):
                out.append(total)
    return out


def rate_product(
    numerator: ProductTable, denominator: ProductTable, *, product_id: str, title: str
) -> ProductTable:
    """A share from a controlled numerator and denominator over the same cells: published only
    where both are, computed from what is published (the true counts stay with the
    coordinator), and at most 1.

    Examples
    --------
    >>> cells = pd.DataFrame({"area": ["W1", "W2"], "count": [30, 40]})
    >>> rules = DisclosureRules(min_cell=0, rounding_base=5)
    >>> top = controlled_product(cells.assign(count=[35, 20]), product_id="n", title="t",
    ...                          rules=rules)
    >>> bottom = controlled_product(cells, product_id="d", title="t", rules=rules)
    >>> rate_product(top, bottom, product_id="r", title="t").table["rate"].tolist()
    [1.0, 0.5]
    """
    if len(numerator.table) != len(denominator.table) or numerator.dims != denominator.dims:
        raise ProductError("a rate's numerator and denominator must have the same cells")
    table = numerator.table.copy()
    top = table["count"].astype("Float64")
    bottom = denominator.table["count"].astype("Float64").to_numpy()
    table["denominator"] = denominator.table["count"].to_numpy()
    rate = (top / bottom).where((~pd.isna(top)) & (~pd.isna(bottom)) & (bottom > 0))
    # The numerator counts some of the denominator's people, but the two are rounded apart: a
    # numerator rounded up past its denominator is a share of all of them, never above 100 %.
    rate = rate.clip(upper=1.0)
    table["rate"] = rate.astype("float64")
    return ProductTable(
        product_id=product_id,
        title=title,
        table=table,
        rules=numerator.rules,
        suppressed_cells=numerator.suppressed_cells,
        unknown_area=numerator.unknown_area,
        report=numerator.report,
        held=numerator.held,
        dims=numerator.dims,
    )


def area_row_totals(cells: pd.DataFrame, *, unknown_area: str) -> list[KnownTotal]:
    """The totals the area-holding partner knows: each real area's row, every entity of which
    is one of its own records. (The not-known row mixes entities it does not hold.)"""
    return [
        total
        for total in known_totals(cells, by=["area"])
        if cells["area"].iloc[total.cells[0]] != unknown_area
    ]


def partner_count_cells(
    *,
    entity_partners: pd.Series,
    entity_area: pd.Series,
    n_partners: int,
    unknown_area: str = "area not known",
    areas: Sequence[str] | None = None,
) -> pd.DataFrame:
    """True counts of entities by the number of partners that know them and by area: the raw
    cells of "residents known to 1, 2 or 3 services, by ward", before disclosure control.

    The area comes from one partner; entities it does not know (or knows without an area) are
    counted in the ``unknown_area`` row.

    The table has one row per (area, partners) for every area and every partners value
    ``1..n_partners``. Zero counts are kept, then suppressed: a missing row would itself say
    "nobody here". The ``unknown_area`` rows are always present, for the same reason. Rows are
    sorted by area (the ``unknown_area`` rows last), then by partners.

    Parameters
    ----------
    entity_partners
        Index: entity id (unique). Value: number of partners that know the entity,
        ``1..n_partners``.
    entity_area
        Index: entity id, for entities the area-holding partner knows (a subset of
        ``entity_partners``'s index). Value: area code; missing values count as unknown.
    n_partners
        Number of partners in the project.
    unknown_area
        Label of the row for entities without an area; must differ from every area code.
    areas
        Every area to report, e.g. every ward in the authority, so that an area where nobody is
        linked still gets its (suppressed) rows. When given, it must include every area code in
        ``entity_area``. When omitted, the areas present in ``entity_area`` are reported.

    Returns
    -------
    pandas.DataFrame
        Columns ``area`` (text), ``partners`` (int) and ``count`` (true counts, ``int64``).

    Raises
    ------
    ProductError
        On duplicate entity ids, partner counts outside ``1..n_partners``, areas for entities
        that are not in ``entity_partners``, an area code equal to ``unknown_area``, or area
        codes missing from ``areas``.

    Examples
    --------
    >>> partners = pd.Series([1, 2, 2], index=["e1", "e2", "e3"])
    >>> area = pd.Series(["W1", "W1"], index=["e1", "e2"])
    >>> partner_count_cells(entity_partners=partners, entity_area=area, n_partners=2)["count"].tolist()
    [1, 1, 0, 1]
    """
    if isinstance(n_partners, bool) or not isinstance(n_partners, int) or n_partners < 1:
        raise ProductError("n_partners must be a positive integer")
    partners = _checked_partners(entity_partners, n_partners)
    area = _checked_area(entity_area, partners.index)

    present = set(area.dropna())
    if areas is None:
        row_areas = sorted(present)
    else:
        listed = [str(a) for a in areas]
        unlisted = len(present - set(listed))
        if unlisted:
            raise ProductError(f"{unlisted} area code(s) in entity_area are not in areas")
        row_areas = sorted(set(listed))
    if unknown_area in row_areas:
        raise ProductError(f"an area code equals the unknown_area label {unknown_area!r}")
    row_areas.append(unknown_area)

    entities = pd.DataFrame(
        {
            "area": area.reindex(partners.index).fillna(unknown_area).to_numpy(dtype=object),
            "partners": partners.astype(str).to_numpy(dtype=object),
        }
    )
    raw = count_cells(
        entities,
        dims=[
            Dimension("area", tuple(row_areas), not_known=False),
            Dimension("partners", tuple(str(k) for k in range(1, n_partners + 1)), not_known=False),
        ],
    )
    raw["area"] = raw["area"].astype(str)
    raw["partners"] = raw["partners"].astype(np.int64)
    return raw


def _checked_partners(entity_partners: pd.Series, n_partners: int) -> pd.Series:
    if not entity_partners.index.is_unique:
        raise ProductError("entity_partners has duplicate entity ids")
    dtype = entity_partners.dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_integer_dtype(dtype):
        raise ProductError("entity_partners must hold integer partner counts")
    missing = int(entity_partners.isna().sum())
    if missing:
        raise ProductError(f"entity_partners has {missing} missing value(s)")
    values = entity_partners.to_numpy(dtype=np.int64)
    out_of_range = int(np.count_nonzero((values < 1) | (values > n_partners)))
    if out_of_range:
        raise ProductError(f"entity_partners has {out_of_range} value(s) outside 1..{n_partners}")
    return pd.Series(values, index=entity_partners.index)


def _checked_area(entity_area: pd.Series, entities: pd.Index) -> pd.Series:
    if not entity_area.index.is_unique:
        raise ProductError("entity_area has duplicate entity ids")
    unknown = int((~entity_area.index.isin(entities)).sum())
    if unknown:
        raise ProductError(f"entity_area has {unknown} entity id(s) not in entity_partners")
    # Codes are labels: compare and sort them as text whatever dtype they arrived in.
    values = [None if pd.isna(v) else str(v) for v in entity_area.tolist()]
    return pd.Series(values, index=entity_area.index, dtype=object)
