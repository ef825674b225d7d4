"""The disclosure report: what happened to every cell of a controlled table, and why.

It is for the coordinator's operator and the release approver, and it quotes no true count: a
cell's decision, a short reason, and the value that will be published (if any). It is still an
internal document (it says which suppressed cells are primary, which a reader could use to narrow
them), so it goes to no partner.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from oda_fed.disclosure.counts import _as_counts
from oda_fed.disclosure.ledger import LedgerHold
from oda_fed.disclosure.rules import DisclosureError, DisclosureRules
from oda_fed.disclosure.secondary import KnownTotal, Suppression

__all__ = ["CellDecision", "CellReport", "DisclosureReport", "disclosure_report"]


class CellDecision(enum.Enum):
    """What disclosure control did to one cell."""

    #: Published as counted (already a multiple of the rounding base, or no rounding).
    RELEASED = "released"
    #: Published, rounded to a multiple of the rounding base.
    ROUNDED = "rounded"
    #: Suppressed: its true count is below ``min_cell``.
    SUPPRESSED_PRIMARY = "suppressed (primary)"
    #: Suppressed as a complement, so a known total does not give another cell away.
    SUPPRESSED_SECONDARY = "suppressed (secondary)"
    #: Suppressed by the release ledger: too close to an earlier release of the same cell.
    HELD = "held"


@dataclass(frozen=True)
class CellReport:
    """One cell's line in a :class:`DisclosureReport`.

    Parameters
    ----------
    coordinates
        ``(dimension, value)`` pairs, values as text.
    decision
        What was done.
    reason
        Why, in a few words; never a true count.
    published
        The value to be published, or None when suppressed or held.
    """

    coordinates: tuple[tuple[str, str], ...]
    decision: CellDecision
    reason: str
    published: int | None


@dataclass(frozen=True)
class DisclosureReport:
    """Every cell's decision for one controlled table, for the release approver.

    Parameters
    ----------
    rules
        The rules the table was controlled with.
    keyed
        Whether rounding used cell keys (else half up).
    cells
        One line per cell, in the table's order.
    exposed
        Labels of the known totals secondary suppression could not protect (all their cells
        suppressed and still below ``min_cell`` together): each needs a decision.

    Examples
    --------
    >>> report = DisclosureReport(DisclosureRules(), keyed=True, cells=(), exposed=())
    >>> report.tally()
    {}
    """

    rules: DisclosureRules
    keyed: bool
    cells: tuple[CellReport, ...]
    exposed: tuple[str, ...]

    def tally(self) -> dict[CellDecision, int]:
        """How many cells got each decision, in :class:`CellDecision` order, zeros left out."""
        counts = Counter(c.decision for c in self.cells)
        return {d: counts[d] for d in CellDecision if counts[d]}

    def to_frame(self) -> pd.DataFrame:
        """One row per cell: its coordinates, decision, reason and published value (empty when
        none is published). No true count: it is the approver's page, not the ledger.

        Examples
        --------
        >>> DisclosureReport(DisclosureRules(), keyed=True, cells=(), exposed=()).to_frame().columns.tolist()
        ['decision', 'reason', 'published']
        """
        rows = [
            {**dict(c.coordinates), "decision": c.decision.value, "reason": c.reason,
             "published": "" if c.published is None else c.published}
            for c in self.cells
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=None if rows else ["decision", "reason", "published"])


def disclosure_report(
    cells: pd.DataFrame,
    *,
    controlled: pd.DataFrame,
    dimensions: Sequence[str],
    rules: DisclosureRules,
    suppression: Suppression,
    known_totals: Sequence[KnownTotal] = (),
    holds: Sequence[LedgerHold] = (),
    keyed: bool,
    count_column: str = "count",
) -> DisclosureReport:
    """Build the report of one controlled table from what each step decided.

    The decision of a cell is, first that applies: primary suppression (true count below
    ``rules.min_cell``), held by the ledger, secondary suppression, rounded (published value
    differs from the true one), released.

    Parameters
    ----------
    cells
        The table before control: dimension columns and true counts.
    controlled
        The same table after :func:`~oda_fed.disclosure.control_counts`.
    dimensions
        The dimension columns, for each cell's coordinates.
    rules
        The rules applied.
    suppression
        The outcome of :func:`~oda_fed.disclosure.secondary_suppression`.
    known_totals
        The known totals given to it, for the complements' reasons.
    holds
        The ledger's holds (:meth:`~oda_fed.disclosure.ReleaseLedger.check`), by position.
    keyed
        Whether the rounding used cell keys.
    count_column
        The count column of both tables.

    Returns
    -------
    DisclosureReport

    Examples
    --------
    :func:`~oda_fed.disclosure.control_table` builds one:

    >>> from oda_fed.disclosure import control_table
    >>> cells = pd.DataFrame({"area": ["W1", "W2"], "count": [3, 40]})
    >>> out = control_table(cells, rules=DisclosureRules(), dimensions=["area"])
    >>> [(c.decision.value, c.published) for c in out.report.cells]
    [('suppressed (primary)', None), ('released', 40)]
    """
    true = _as_counts(cells[count_column], count_column)
    shown = controlled[count_column]
    if len(shown) != len(true) or len(suppression.mask) != len(true):
        raise DisclosureError("the controlled table and the suppression must match the cells")
    held = {h.position: h for h in holds}
    labels = [t.label for t in known_totals]
    rounding = "by its cell key" if keyed else "half up"
    coords = cells[list(dimensions)].astype(str).itertuples(index=False, name=None)
    lines = []
    for i, values in enumerate(coords):
        published = None if pd.isna(shown.iloc[i]) else int(shown.iloc[i])
        if true[i] < rules.min_cell:
            decision, reason = CellDecision.SUPPRESSED_PRIMARY, f"below {rules.min_cell}"
        elif i in held:
            decision, reason = CellDecision.HELD, held[i].reason
        elif suppression.secondary[i]:
            total = int(suppression.protects[i])
            label = labels[total] if 0 <= total < len(labels) else "a known total"
            decision, reason = CellDecision.SUPPRESSED_SECONDARY, f"complement for {label}"
        elif published != true[i]:
            decision = CellDecision.ROUNDED
            reason = f"rounded {rounding} to a multiple of {rules.rounding_base}"
        else:
            decision, reason = CellDecision.RELEASED, "published as counted"
        coordinates = tuple(zip(dimensions, values, strict=True))
        lines.append(CellReport(coordinates, decision, reason, published))
    exposed = tuple(labels[i] if i < len(labels) else str(i) for i in suppression.exposed)
    return DisclosureReport(rules=rules, keyed=keyed, cells=tuple(lines), exposed=exposed)
