"""Disclosure control applied to every data product before release.

Counts below a threshold are suppressed and the rest rounded; no totals are published, because a
total lets a reader difference a suppressed cell back out.
"""

from oda_fed.disclosure.counts import SUPPRESSED_COLUMN, control_counts, round_half_up
from oda_fed.disclosure.rules import DisclosureError, DisclosureRules

__all__ = [
    "SUPPRESSED_COLUMN",
    "DisclosureError",
    "DisclosureRules",
    "control_counts",
    "round_half_up",
]
