"""The audit log: every message that crosses an organisation's boundary, on both sides.

Each party appends to its own hash-chained JSON Lines log (:class:`AuditLog`); a DPO verifies the
logs with :func:`verify_dir`, compares the two sides with :func:`cross_check`, and totals what
crossed with :func:`summarise_dir`. The format is documented field by field in
``docs/audit-log.md``.
"""

from oda_fed.audit.entry import FORMAT_VERSION, AuditEntry, canonical_json, leaf_hash
from oda_fed.audit.log import AuditLog
from oda_fed.audit.report import CrossingTotal, LogSummary, summarise_dir
from oda_fed.audit.verify import LogReport, cross_check, read_entries, verify_dir, verify_log

__all__ = [
    "FORMAT_VERSION",
    "AuditEntry",
    "AuditLog",
    "CrossingTotal",
    "LogReport",
    "LogSummary",
    "canonical_json",
    "cross_check",
    "leaf_hash",
    "read_entries",
    "summarise_dir",
    "verify_dir",
    "verify_log",
]
