"""One call from a table of true counts to a releasable table and its disclosure report.

The order matters: cells below ``min_cell`` and cells the ledger holds are suppressed first;
secondary suppression then protects them all against the known totals (a held cell is as
recoverable from a row total as a small one); only then are the remaining cells rounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from oda_fed.disclosure.counts import _as_counts, control_counts
from oda_fed.disclosure.ledger import LedgerHold
from oda_fed.disclosure.report import DisclosureReport, disclosure_report
from oda_fed.disclosure.rules import DisclosureError, DisclosureRules
from oda_fed.disclosure.secondary import KnownTotal, secondary_suppression

__all__ = ["ControlledTable", "control_table"]


@dataclass(frozen=True, eq=False)
class ControlledTable:
    """A table ready for release, with the report its approver reads.

    Parameters
    ----------
    table
        As :func:`~oda_fed.disclosure.control_counts` returns it: counts ``<NA>`` where
        suppressed or held, a boolean ``suppressed`` column; no cell keys, no true counts.
    report
        What happened to each cell (internal to the coordinator).
    held
        Boolean mask of the cells the ledger held, small ones included: pass it to
        :meth:`~oda_fed.disclosure.ReleaseLedger.record`. A held cell must never become a
        baseline for later releases, even when it was also below ``min_cell``; otherwise when
        the cell stops being small would decide the ledger's next holds, and the threshold would
        be an oracle again.
    """

    table: pd.DataFrame
    report: DisclosureReport
    held: np.ndarray


def control_table(
    cells: pd.DataFrame,
    *,
    rules: DisclosureRules,
    dimensions: Sequence[str],
    cell_keys: np.ndarray | None = None,
    known_totals: Sequence[KnownTotal] = (),
    holds: Sequence[LedgerHold] = (),
    count_column: str = "count",
) -> ControlledTable:
    """Suppress, protect and round a count table, and report every cell's decision.

    Parameters
    ----------
    cells
        One row per cell: the dimension columns and the true counts (as
        :func:`~oda_fed.disclosure.count_cells` makes them). Stack products with a product
        column to protect totals that span them.
    rules
        The rules to apply; take the strictest partner's threshold with
        :meth:`DisclosureRules.for_partners`.
    dimensions
        The dimension columns (the report's coordinates).
    cell_keys
        One key per cell for cell-key rounding, or None for rounding half up.
    known_totals
        Every total some party knows (:func:`~oda_fed.disclosure.known_totals`); none means
        no secondary suppression.
    holds
        Cells the release ledger holds (:meth:`~oda_fed.disclosure.ReleaseLedger.check`),
        positions in ``cells``.
    count_column
        Name of the column holding the counts.

    Returns
    -------
    ControlledTable

    Raises
    ------
    DisclosureError
        On bad counts, keys or known totals, or a hold outside the table.

    Examples
    --------
    >>> from oda_fed.disclosure import known_totals
    >>> cells = pd.DataFrame({"area": ["W1"] * 3, "partners": [1, 2, 3], "count": [8, 22, 40]})
    >>> out = control_table(cells, rules=DisclosureRules(), dimensions=["area", "partners"],
    ...                     known_totals=known_totals(cells, by=["area"]))
    >>> out.table["count"].tolist()
    [<NA>, <NA>, 40]
    >>> [c.decision.value for c in out.report.cells]
    ['suppressed (primary)', 'suppressed (secondary)', 'released']
    """
    if count_column not in cells.columns:
        raise DisclosureError(f"table has no count column {count_column!r}")
    true = _as_counts(cells[count_column], count_column)
    held = np.zeros(len(true), dtype=bool)
    for hold in holds:
        if not 0 <= hold.position < len(true):
            raise DisclosureError("a ledger hold names a cell outside the table")
        held[hold.position] = True
    suppression = secondary_suppression(
        cells,
        primary=(true < rules.min_cell) | held,
        min_cell=rules.min_cell,
        known_totals=known_totals,
        count_column=count_column,
    )
    table = control_counts(
        cells,
        rules=rules,
        count_column=count_column,
        cell_keys=cell_keys,
        suppress=suppression.mask,
    )
    report = disclosure_report(
        cells,
        controlled=table,
        dimensions=dimensions,
        rules=rules,
        suppression=suppression,
        known_totals=known_totals,
        holds=holds,
        keyed=cell_keys is not None,
        count_column=count_column,
    )
    return ControlledTable(table=table, report=report, held=held)
