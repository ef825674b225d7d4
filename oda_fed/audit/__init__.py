"""The audit log: every message that crosses an organisation's boundary, on both sides.

Each party appends to its own hash-chained JSON Lines log (:class:`AuditLog`); a DPO verifies the
logs with :func:`verify_dir`, compares the two sides with :func:`cross_check`, totals each log
with :func:`summarise_dir`, and puts the logs together for the DPO report with :func:`dpo_report`
(written as HTML and CSV by :mod:`oda_fed.audit.dpo`). The format is documented field by field
in ``docs/audit-log.md``.
"""

from oda_fed.audit.entry import FORMAT_VERSION, AuditEntry, canonical_json, leaf_hash
from oda_fed.audit.log import AuditLog
from oda_fed.audit.report import CrossingTotal, DpoReport, LogSummary, dpo_report, summarise_dir
from oda_fed.audit.verify import LogReport, cross_check, read_entries, verify_dir, verify_log

__all__ = [
    "FORMAT_VERSION",
    "AuditEntry",
    "AuditLog",
    "CrossingTotal",
    "DpoReport",
    "LogReport",
    "LogSummary",
    "canonical_json",
    "cross_check",
    "dpo_report",
    "leaf_hash",
    "read_entries",
    "summarise_dir",
    "verify_dir",
    "verify_log",
]
