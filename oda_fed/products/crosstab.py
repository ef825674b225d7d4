"""Counts of linked entities by up to three dimensions, in a cohort: the raw cells of a product.

Every combination of the dimensions' values is a cell, zeros included (a missing row would itself
say "nobody here"), and an entity whose value is not known counts in its dimension's
:data:`NOT_KNOWN` category. The counts here are true counts: they must go through disclosure
control before anything is released.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from oda_fed.disclosure import count_cells as engine_count_cells
from oda_fed.errors import OdaFedError

__all__ = ["MAX_DIMENSIONS", "NOT_KNOWN", "Dimension", "ProductError", "count_cells"]


class ProductError(OdaFedError, ValueError):
    """A data product cannot be built, written or reported from the inputs given.

    Messages say how many values are wrong, never which entity ids or counts.
    """


#: The label of "no value" in every dimension: the partner holds none, or does not know the entity.
NOT_KNOWN = "not known"
MAX_DIMENSIONS = 3


@dataclass(frozen=True)
class Dimension:
    """One dimension of a table: its column in the entities frame and its values, in order.

    ``NOT_KNOWN`` is added after ``values`` when ``not_known`` (the default).
    """

    column: str
    values: tuple[str, ...]
    not_known: bool = True

    @property
    def categories(self) -> tuple[str, ...]:
        return (*self.values, NOT_KNOWN) if self.not_known else self.values


def count_cells(
    entities: pd.DataFrame,
    *,
    dims: Sequence[Dimension],
    cohort: pd.Series | None = None,
) -> pd.DataFrame:
    """True counts of entities in every cell of ``dims``, for the entities in ``cohort``.

    Parameters
    ----------
    entities
        One row per entity, with a column per dimension (text; empty or missing is not known).
    dims
        One to three dimensions.
    cohort
        Optional boolean per row of ``entities``: only these entities are counted.

    Returns
    -------
    pandas.DataFrame
        One row per cell, in the order of the dimensions' categories: a column per dimension and
        ``count`` (``int64``).

    Raises
    ------
    ProductError
        Too many or no dimensions, a missing column, or a value outside its dimension.

    Examples
    --------
    >>> people = pd.DataFrame({"ward": ["W1", "W1", ""], "partners": ["1", "2", "2"]})
    >>> cells = count_cells(people, dims=[Dimension("ward", ("W1", "W2")),
    ...                                   Dimension("partners", ("1", "2"), not_known=False)])
    >>> cells["count"].tolist(), cells["ward"].unique().tolist()
    ([1, 1, 0, 0, 0, 1], ['W1', 'W2', 'not known'])
    """
    if not 1 <= len(dims) <= MAX_DIMENSIONS:
        raise ProductError(f"a table has 1 to {MAX_DIMENSIONS} dimensions, not {len(dims)}")
    keep = np.ones(len(entities), dtype=bool) if cohort is None else cohort.to_numpy(dtype=bool)
    columns = {}
    for dim in dims:
        if dim.column not in entities.columns:
            raise ProductError(f"no column for dimension '{dim.column}'")
        raw = entities[dim.column].fillna("").astype(str).to_numpy(dtype=object)[keep]
        if dim.not_known:
            raw = np.where(raw == "", NOT_KNOWN, raw)
        outside = int(np.count_nonzero(pd.Index(dim.categories).get_indexer(raw) < 0))
        if outside:
            raise ProductError(
                f"{outside} value(s) of '{dim.column}' are not among its "
                f"{len(dim.categories)} categories"
            )
        columns[dim.column] = raw
    cells = engine_count_cells(
        pd.DataFrame(columns),
        dimensions=[d.column for d in dims],
        levels={d.column: list(d.categories) for d in dims},
    )
    return cells.table
