"""k-anonymity and l-diversity for record-level outputs (prioritised lists, alerts).

A record-level output tells its recipient something about each of its own records: the score band
of a person on a list, which groups of indicators gave them points, or that they were alerted.
The columns it carries beyond the record id are its *quasi-identifiers*: rows with the same values
form a group that the recipient cannot tell apart from the output alone.

:func:`protect_records` makes every such group hold at least ``k`` rows (k-anonymity) and, when a
*sensitive* attribute is declared, at least ``l`` distinct values of it (l-diversity), so that
being in a group does not give away the sensitive value. A group that falls short first has its
generalisable columns withheld one at a time (a withheld value merges it with the other rows
withheld the same way), and rows that still fall short are left out of the output. A whole output
below ``min_rows`` rows is held.

Examples
--------
>>> rows = pd.DataFrame({"band": ["high"] * 5 + ["low"] * 2, "groups": ["a"] * 5 + ["a", "b"]})
>>> out = protect_records(rows, quasi=["band", "groups"], generalise=["groups"], k=2)
>>> out.rows["groups"].tolist()
['a', 'a', 'a', 'a', 'a', 'withheld', 'withheld']
>>> out.decisions["generalised"], out.decisions["withheld_k"]
(2, 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["WITHHELD", "ProtectedRecords", "protect_records"]

#: A quasi-identifier's value where it was withheld to keep its group large enough.
WITHHELD = "withheld"


@dataclass(frozen=True)
class ProtectedRecords:
    """The rows that may be released, and what protection did.

    Attributes
    ----------
    rows
        The rows kept, in their input order, with withheld values replaced by :data:`WITHHELD`.
    decisions
        Counts of rows: ``released``, ``generalised`` (released with a value withheld),
        ``withheld_k`` and ``withheld_l`` (left out for a group too small or too uniform), and
        ``held`` (every row, when fewer than ``min_rows`` but some would be released).
    held
        Why the whole output is held, or ``""``.
    """

    rows: pd.DataFrame
    decisions: dict[str, int] = field(default_factory=dict)
    held: str = ""


def protect_records(
    rows: pd.DataFrame,
    *,
    quasi: Sequence[str],
    generalise: Sequence[str] = (),
    k: int,
    sensitive: pd.Series | None = None,
    l_diversity: int = 1,
    min_rows: int = 0,
) -> ProtectedRecords:
    """Keep only rows whose group (same ``quasi`` values) has ``k`` rows and ``l_diversity``
    sensitive values.

    Parameters
    ----------
    rows
        One row per record; the columns in ``quasi`` are what the output carries about it.
    quasi
        The quasi-identifier columns (empty: all rows form one group).
    generalise
        Columns of ``quasi`` that may be withheld for a short group, in the order to try.
    k
        The smallest group.
    sensitive
        Each row's value of the sensitive attribute, aligned with ``rows`` (not released;
        ``""`` is a value of its own, "not known").
    l_diversity
        The fewest distinct sensitive values a group may have.
    min_rows
        Below this many rows released, nothing is: the output is held.
    """
    if not set(generalise) <= set(quasi):
        raise ValueError("only quasi-identifiers can be generalised")
    out = rows.copy()
    values = None if sensitive is None else pd.Series(sensitive).reset_index(drop=True)
    n = len(out)
    generalised = np.zeros(n, dtype=bool)
    failing = _failing(out, quasi, k, values, l_diversity)
    for column in generalise:
        if not failing.any():
            break
        out.loc[failing, column] = WITHHELD
        generalised |= failing
        failing = _failing(out, quasi, k, values, l_diversity)
    too_few = _too_small(out, quasi, k) & failing
    too_uniform = failing & ~too_few
    keep = ~failing
    decisions = {
        "released": int(keep.sum()),
        "generalised": int((generalised & keep).sum()),
        "withheld_k": int(too_few.sum()),
        "withheld_l": int(too_uniform.sum()),
        "held": 0,
    }
    kept = out[keep]
    if 0 < decisions["released"] < min_rows:
        decisions["held"] = decisions["released"]
        decisions["released"] = 0
        decisions["generalised"] = 0
        return ProtectedRecords(
            rows=out.iloc[0:0],
            decisions=decisions,
            held=f"{len(kept)} record(s) would be released, fewer than the {min_rows} allowed",
        )
    return ProtectedRecords(rows=kept, decisions=decisions)


def _groups(rows: pd.DataFrame, quasi: Sequence[str]) -> np.ndarray:
    """Each row's group number (rows with the same quasi-identifier values share one)."""
    if not quasi or rows.empty:
        return np.zeros(len(rows), dtype=np.int64)
    return rows.groupby(list(quasi), sort=False, dropna=False).ngroup().to_numpy()


def _too_small(rows: pd.DataFrame, quasi: Sequence[str], k: int) -> np.ndarray:
    groups = _groups(rows, quasi)
    return np.bincount(groups, minlength=1)[groups] < k if len(rows) else np.zeros(0, bool)


def _failing(
    rows: pd.DataFrame,
    quasi: Sequence[str],
    k: int,
    sensitive: pd.Series | None,
    l_diversity: int,
) -> np.ndarray:
    """Rows in a group with fewer than ``k`` rows or ``l_diversity`` sensitive values."""
    failing = _too_small(rows, quasi, k)
    if sensitive is not None and l_diversity > 1 and len(rows):
        groups = _groups(rows, quasi)
        distinct = (
            pd.DataFrame({"g": groups, "s": sensitive.to_numpy()})
            .groupby("g")["s"]
            .nunique()
            .reindex(range(groups.max() + 1))
            .to_numpy()
        )
        failing = failing | (distinct[groups] < l_diversity)
    return failing
