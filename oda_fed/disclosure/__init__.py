"""Disclosure control applied to every data product before release.

Counts below a threshold are suppressed and the rest rounded; no totals are published, because a
total lets a reader difference a suppressed cell back out. Across releases, rounding is keyed to
the entities in each cell (:mod:`~oda_fed.disclosure.cellkey`), complements hide what known totals
would give back (:mod:`~oda_fed.disclosure.secondary`), and the release ledger holds cells that
differ from an earlier release by a small group (:mod:`~oda_fed.disclosure.ledger`). Record-level
outputs keep k-anonymity and l-diversity (:mod:`~oda_fed.disclosure.records`).
:func:`control_table` runs them in order and reports each cell's decision.
"""

from oda_fed.disclosure.cellkey import (
    CellCounts,
    cellkey_round,
    count_cells,
    definition_keys,
    record_keys,
)
from oda_fed.disclosure.control import ControlledTable, control_table
from oda_fed.disclosure.counts import SUPPRESSED_COLUMN, control_counts, round_half_up
from oda_fed.disclosure.ledger import CellDefinition, LedgerHold, Overlap, ReleaseLedger
from oda_fed.disclosure.records import WITHHELD, ProtectedRecords, protect_records
from oda_fed.disclosure.report import (
    CellDecision,
    CellReport,
    DisclosureReport,
    disclosure_report,
)
from oda_fed.disclosure.rules import DisclosureError, DisclosureRules
from oda_fed.disclosure.secondary import (
    KnownTotal,
    Suppression,
    known_totals,
    secondary_suppression,
)

__all__ = [
    "SUPPRESSED_COLUMN",
    "WITHHELD",
    "CellCounts",
    "CellDecision",
    "CellDefinition",
    "CellReport",
    "ControlledTable",
    "DisclosureError",
    "DisclosureReport",
    "DisclosureRules",
    "KnownTotal",
    "LedgerHold",
    "Overlap",
    "ProtectedRecords",
    "ReleaseLedger",
    "Suppression",
    "cellkey_round",
    "control_counts",
    "control_table",
    "count_cells",
    "definition_keys",
    "disclosure_report",
    "known_totals",
    "protect_records",
    "record_keys",
    "round_half_up",
    "secondary_suppression",
]
