"""Secondary suppression: more cells hidden so that no suppressed cell can be worked out from
totals that some party knows.

Suppressing the small cells of a table is not enough when a reader knows a total over some of its
cells. The partner that holds the area attribute knows its own row totals (every entity in its rows
is one of its records), so a row with one suppressed cell gives that cell back as "row total minus
published cells". A published margin does the same, and so does an area that two products of one
round both cover. Each such piece of knowledge is a :class:`KnownTotal`: a signed sum of cells
whose value someone knows. :func:`secondary_suppression` hides further cells (complements) until
no known total exposes a suppressed cell on its own.

The guarantee
-------------
After :func:`secondary_suppression`, every known total ``R`` (``sum(sign_i * cell_i) = t``) is in
one of three states, given the final mask:

1. it holds no suppressed cell; or
2. it holds at least two suppressed cells and, if they all carry the same sign, their true counts
   add up to at least ``min_cell``; or
3. it is listed in :attr:`Suppression.exposed`: all its cells are suppressed and 2. still fails
   (its total alone says more than ``min_cell`` allows, and nothing inside the table can change
   that; merge categories or drop the total's cells from the product).

So an attacker who knows every published value exactly, the value ``t`` of each known total, and
that counts are non-negative integers, and who uses one known total at a time, learns of a
suppressed cell at most that it lies in ``[0, S]`` with ``S >= min_cell`` (the suppressed cells of
that total, same signs), or no upper bound at all (mixed signs). Rounding of the published cells
only widens that, so it is ignored here.

What it does not cover
----------------------
- **Several known totals at once.** Each total is checked on its own and the checks repeat to a
  fixed point. Totals that share suppressed cells can still pin a cell down together (the general
  linear-programming attack over many overlapping groups); an exact audit solves two linear
  programmes per suppressed cell, as tau-ARGUS does, and is not done here. In a two-way table
  with row and column totals the usual outcome (suppressed cells in rectangles) is safe, but
  that is not proved for every pattern.
- **Knowledge beyond non-negativity.** An attacker who guesses which suppressed cells are primary
  (so below ``min_cell``), who knows the complement rule (smallest counts first, so a complement
  is no larger than the published cells of its total), or who knows its own contribution to a
  cell can narrow further than the bound above.
- **Totals not given.** Only the known totals passed in are protected: list every margin, every
  partner's own row totals and every overlap with another product of the same round.
- **Loss.** Complements are chosen greedily (smallest count first, then lowest position), not to
  minimise the total suppressed over the whole table.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from oda_fed.disclosure.counts import _as_counts
from oda_fed.disclosure.rules import DisclosureError

__all__ = ["KnownTotal", "Suppression", "known_totals", "secondary_suppression"]


@dataclass(frozen=True)
class KnownTotal:
    """A signed sum of cells whose value some party knows or can compute.

    Parameters
    ----------
    cells
        Positions (0-based rows) of the cells in the table given to
        :func:`secondary_suppression`, each at most once.
    signs
        ``+1`` or ``-1`` per cell; empty means all ``+1`` (a plain total). Mixed signs say that
        two groups of cells count the same people, as when two products of one round cover an
        overlapping area (see :meth:`same_people`).
    label
        What the total is, for the disclosure report (``"area=W1"``); never a count.

    Examples
    --------
    >>> KnownTotal(cells=(0, 1, 2), label="area=W1").signs
    (1, 1, 1)
    """

    cells: tuple[int, ...]
    signs: tuple[int, ...] = ()
    label: str = ""

    def __post_init__(self) -> None:
        cells = tuple(_position(c) for c in self.cells)
        if len(set(cells)) != len(cells):
            raise DisclosureError(f"known total {self.label!r} lists a cell twice")
        signs = tuple(self.signs) if self.signs else (1,) * len(cells)
        if len(signs) != len(cells) or any(s not in (1, -1) for s in signs):
            raise DisclosureError(f"known total {self.label!r} needs one sign, +1 or -1, per cell")
        # Frozen: normalise through object.__setattr__, once, at construction.
        object.__setattr__(self, "cells", cells)
        object.__setattr__(self, "signs", signs)

    @classmethod
    def same_people(cls, first: Iterable[int], second: Iterable[int], *, label: str) -> KnownTotal:
        """Two groups of cells that count the same entities, so their sums are equal.

        The same area in two products of one round, or a district in one product and its wards
        in another: ``sum(first) - sum(second) = 0`` is known to anyone who reads both.

        Examples
        --------
        >>> KnownTotal.same_people([0, 1], [5], label="district N").signs
        (1, 1, -1)
        """
        plus, minus = list(first), list(second)
        return cls(cells=(*plus, *minus), signs=(1,) * len(plus) + (-1,) * len(minus), label=label)


@dataclass(frozen=True, eq=False)
class Suppression:
    """The outcome of :func:`secondary_suppression`.

    Parameters
    ----------
    primary
        The primary-suppression mask given (cells below ``min_cell``, cells held by the ledger).
    mask
        Every cell to suppress: ``primary`` and the complements.
    protects
        Per cell, the position in ``known_totals`` of the total it was suppressed to protect
        (complements only), else ``-1``.
    exposed
        Positions of the known totals that cannot be protected inside the table (state 3 of
        the module's guarantee).
    """

    primary: np.ndarray
    mask: np.ndarray
    protects: np.ndarray
    exposed: tuple[int, ...] = field(default=())

    @property
    def secondary(self) -> np.ndarray:
        """Boolean mask of the complements: suppressed, though not primary."""
        return self.mask & ~self.primary


def known_totals(cells: pd.DataFrame, *, by: Sequence[str]) -> list[KnownTotal]:
    """One :class:`KnownTotal` per combination of the ``by`` columns: rows, columns, margins.

    ``by=["area"]`` gives the row totals of an area by partners table (what the area-holding
    partner knows); ``by=["partners"]`` the column totals; ``by=[]`` the grand total. Add the
    product column to ``by`` when ``cells`` stacks several products.

    Parameters
    ----------
    cells
        The table that will be given to :func:`secondary_suppression`.
    by
        The columns that stay fixed within a total.

    Returns
    -------
    list of KnownTotal
        In the order of the ``by`` values, sorted; labels such as ``"area=W1"``.

    Examples
    --------
    >>> cells = pd.DataFrame({"area": ["W1", "W1", "W2", "W2"], "partners": [1, 2, 1, 2]})
    >>> [(t.cells, t.label) for t in known_totals(cells, by=["area"])]
    [((0, 1), 'area=W1'), ((2, 3), 'area=W2')]
    >>> [t.cells for t in known_totals(cells, by=[])]
    [(0, 1, 2, 3)]
    """
    keys = list(by)
    absent = [c for c in keys if c not in cells.columns]
    if absent:
        raise DisclosureError(f"cells lack column(s) {absent}")
    if not keys:
        return [KnownTotal(cells=tuple(range(len(cells))), label="grand total")]
    out = []
    # groupby(...).indices: positions per group without building a frame per group.
    groups = cells.groupby(keys, sort=True, dropna=False).indices
    for values in sorted(groups):
        positions = groups[values]
        parts = values if isinstance(values, tuple) else (values,)
        label = ", ".join(f"{k}={v}" for k, v in zip(keys, parts, strict=True))
        out.append(KnownTotal(cells=tuple(positions.tolist()), label=label))
    return out


def secondary_suppression(
    cells: pd.DataFrame,
    *,
    primary: np.ndarray,
    min_cell: int,
    known_totals: Sequence[KnownTotal],
    count_column: str = "count",
) -> Suppression:
    """Extend a suppression mask until no known total gives a suppressed cell away.

    A known total that holds a suppressed cell must hold at least two, and when they all carry
    the same sign their true counts must add up to ``min_cell`` or more; otherwise the
    unsuppressed cell of that total with the smallest count (then the lowest position) is
    suppressed too. Adding a cell to one total can break another, so totals are checked again
    until none changes. The module docstring states the guarantee and its limits.

    Parameters
    ----------
    cells
        One row per cell with the true counts in ``count_column``. Several products may be
        stacked, with a column telling them apart.
    primary
        Boolean mask of the cells suppressed already (below ``min_cell``, held by the ledger).
    min_cell
        The threshold the suppressed cells of a total must reach together.
    known_totals
        Every total some party knows; a cell may belong to several.
    count_column
        Name of the column holding the true counts.

    Returns
    -------
    Suppression
        The extended mask, what each complement protects, and the totals left exposed.

    Raises
    ------
    DisclosureError
        On counts that are not non-negative integers, a mask of the wrong shape, or a known
        total naming a cell outside the table.

    Examples
    --------
    >>> cells = pd.DataFrame({"area": ["W1"] * 3, "partners": [1, 2, 3], "count": [8, 22, 40]})
    >>> result = secondary_suppression(
    ...     cells, primary=np.array([True, False, False]), min_cell=10,
    ...     known_totals=known_totals(cells, by=["area"]))
    >>> result.mask.tolist(), result.secondary.tolist()
    ([True, True, False], [False, True, False])
    """
    if count_column not in cells.columns:
        raise DisclosureError(f"cells have no count column {count_column!r}")
    counts = _as_counts(cells[count_column], count_column)
    n = len(counts)
    given = np.asarray(primary)
    if given.dtype != np.dtype(bool) or given.shape != (n,):
        raise DisclosureError("primary must be a boolean mask with one value per cell")
    if isinstance(min_cell, bool) or not isinstance(min_cell, int) or min_cell < 0:
        raise DisclosureError("min_cell must be an integer of 0 or more")
    totals = list(known_totals)
    members = [np.asarray(t.cells, dtype=np.intp) for t in totals]
    signs = [np.asarray(t.signs, dtype=np.int8) for t in totals]
    for t, idx in zip(totals, members, strict=True):
        if idx.size and int(idx.max()) >= n:
            raise DisclosureError(f"known total {t.label!r} names a cell outside the table")

    # Which totals each cell is in, so that suppressing it re-checks exactly those.
    in_totals: list[list[int]] = [[] for _ in range(n)]
    for i, idx in enumerate(members):
        for cell in idx.tolist():
            in_totals[cell].append(i)

    mask = given.copy()
    protects = np.full(n, -1, dtype=np.int64)
    exposed: set[int] = set()
    queue = deque(range(len(totals)))
    queued = np.ones(len(totals), dtype=bool)
    while queue:
        i = queue.popleft()
        queued[i] = False
        idx, sign = members[i], signs[i]
        while not _protected(counts[idx], sign, mask[idx], min_cell):
            free = idx[~mask[idx]]
            if free.size == 0:
                exposed.add(i)
                break
            # Smallest count first, then lowest position: deterministic, and loses least.
            pick = int(free[np.lexsort((free, counts[free]))[0]])
            mask[pick] = True
            protects[pick] = i
            for j in in_totals[pick]:
                if j != i and not queued[j]:
                    queue.append(j)
                    queued[j] = True
    return Suppression(
        primary=given.copy(), mask=mask, protects=protects, exposed=tuple(sorted(exposed))
    )


def _protected(
    counts: np.ndarray, signs: np.ndarray, suppressed: np.ndarray, min_cell: int
) -> bool:
    """Whether one known total, on its own, leaves each of its suppressed cells uncertain enough."""
    k = int(np.count_nonzero(suppressed))
    if k == 0:
        return True
    if k == 1:
        return False
    hidden = signs[suppressed]
    if (hidden > 0).any() and (hidden < 0).any():
        # x - y = t: from this total alone, x is bounded below only.
        return True
    return int(counts[suppressed].sum()) >= min_cell


def _position(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 0:
        raise DisclosureError("known total cells must be non-negative integer positions")
    return int(value)
