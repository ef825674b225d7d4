"""Small-cell suppression and rounding of count tables.

No totals are published, neither row, column nor grand totals. A total next to a table with a
suppressed cell lets a reader subtract the published cells from it and recover the suppressed
one, which undoes the suppression. Callers must not add totals to a controlled table either.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from oda_fed.disclosure.cellkey import cellkey_round
from oda_fed.disclosure.rules import DisclosureError, DisclosureRules

__all__ = ["SUPPRESSED_COLUMN", "control_counts", "round_half_up"]

#: Name of the boolean column :func:`control_counts` adds.
SUPPRESSED_COLUMN = "suppressed"


def round_half_up(counts: np.ndarray, base: int) -> np.ndarray:
    """Round non-negative integer counts to the nearest multiple of ``base``, halves up.

    Parameters
    ----------
    counts
        Non-negative integers.
    base
        The rounding base, 1 or more.

    Returns
    -------
    numpy.ndarray
        ``int64`` array of multiples of ``base``.

    Examples
    --------
    >>> round_half_up(np.array([12, 13, 15, 17, 18]), 5).tolist()
    [10, 15, 15, 15, 20]
    >>> round_half_up(np.array([14, 15]), 10).tolist()
    [10, 20]
    """
    values = np.asarray(counts, dtype=np.int64)
    # Integer arithmetic: (2c + b) // 2b is floor(c/b + 1/2), exact for odd and even bases.
    return (2 * values + base) // (2 * base) * base


def control_counts(
    table: pd.DataFrame,
    *,
    rules: DisclosureRules,
    count_column: str = "count",
    cell_keys: np.ndarray | None = None,
    suppress: np.ndarray | None = None,
) -> pd.DataFrame:
    """Suppress small counts and round the rest before a table is released.

    Counts below ``rules.min_cell`` (zero included) become ``<NA>``; the others are rounded to
    the nearest multiple of ``rules.rounding_base``, halves up. The threshold applies to the
    true count, before rounding. No totals are added, and none must be published beside the
    result: see the module docstring.

    With ``cell_keys`` the rounding is the cell key method instead
    (:func:`~oda_fed.disclosure.cellkey_round`): unbiased, the same for the same entities, and
    never below ``max(rules.min_cell, 1)`` for a published non-zero count. Deterministic
    rounding is an oracle across rounds; give cell keys for anything released more than once.

    Parameters
    ----------
    table
        One row per cell, with the true counts in ``count_column``. Counts must be
        non-negative integers; integer-valued floats (``12.0``) are accepted.
    rules
        The project's disclosure rules.
    count_column
        Name of the column holding the counts.
    cell_keys
        One key in [0, 1) per row (:func:`~oda_fed.disclosure.count_cells`), or None for
        rounding half up. Keys are not copied into the result.
    suppress
        Boolean mask of further rows to suppress whatever their count (secondary suppression,
        cells held by the release ledger), or None.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` with the same index, ``count_column`` as nullable ``Int64``
        (``<NA>`` where suppressed) and a boolean column ``"suppressed"`` added.

    Raises
    ------
    DisclosureError
        (a ``ValueError``) when the count column is missing, holds negative, missing or
        non-integer values, or the table already has a ``"suppressed"`` column (controlling a
        controlled table twice would round twice); when ``cell_keys`` or ``suppress`` do not
        hold one valid value per row.

    Examples
    --------
    >>> raw = pd.DataFrame({"area": ["a", "b", "c"], "count": [3, 12, 18]})
    >>> out = control_counts(raw, rules=DisclosureRules(min_cell=10, rounding_base=5))
    >>> out["count"].tolist()
    [<NA>, 10, 20]
    >>> out["suppressed"].tolist()
    [True, False, False]
    >>> keyed = control_counts(raw, rules=DisclosureRules(), cell_keys=np.array([0.1, 0.1, 0.9]))
    >>> keyed["count"].tolist()
    [<NA>, 15, 15]
    """
    if count_column not in table.columns:
        raise DisclosureError(f"table has no count column {count_column!r}")
    if SUPPRESSED_COLUMN in table.columns:
        raise DisclosureError(
            f"table already has a {SUPPRESSED_COLUMN!r} column; control each table once, "
            "from its true counts"
        )
    raw = _as_counts(table[count_column], count_column)
    suppressed = raw < rules.min_cell
    if suppress is not None:
        extra = np.asarray(suppress)
        if extra.dtype != np.dtype(bool) or extra.shape != suppressed.shape:
            raise DisclosureError("suppress must be a boolean mask with one value per row")
        suppressed = suppressed | extra
    if cell_keys is None:
        rounded = round_half_up(raw, rules.rounding_base)
    else:
        rounded = cellkey_round(
            raw, cell_keys=cell_keys, base=rules.rounding_base, lowest=max(rules.min_cell, 1)
        )
    out = table.copy()
    out[count_column] = pd.arrays.IntegerArray(
        np.where(suppressed, 0, rounded), mask=suppressed.copy()
    )
    out[SUPPRESSED_COLUMN] = suppressed
    return out


def _as_counts(column: pd.Series, name: str) -> np.ndarray:
    """Return the column as ``int64`` or raise; messages give how many values, never which."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise DisclosureError(f"count column {name!r} holds booleans, not integer counts")
    missing = int(column.isna().sum())
    if missing:
        raise DisclosureError(f"count column {name!r} has {missing} missing value(s)")
    if pd.api.types.is_integer_dtype(dtype):
        values = column.to_numpy(dtype=np.int64)
    elif pd.api.types.is_float_dtype(dtype):
        floats = column.to_numpy(dtype=np.float64)
        bad = int(np.count_nonzero(~np.isfinite(floats) | (floats != np.floor(floats))))
        if bad:
            raise DisclosureError(f"count column {name!r} has {bad} non-integer value(s)")
        values = floats.astype(np.int64)
    elif pd.api.types.is_object_dtype(dtype):
        items = column.tolist()
        bad = sum(1 for v in items if isinstance(v, bool) or not isinstance(v, numbers.Integral))
        if bad:
            raise DisclosureError(f"count column {name!r} has {bad} non-integer value(s)")
        values = np.array(items, dtype=np.int64)
    else:
        raise DisclosureError(f"count column {name!r} has dtype {dtype}, not integer counts")
    negative = int(np.count_nonzero(values < 0))
    if negative:
        raise DisclosureError(f"count column {name!r} has {negative} negative value(s)")
    return values
