"""What crossed each boundary, totalled per direction and kind: the DPO's summary of the logs.

A summary is only as good as the log under it, so each one carries its log's verification. A log
that fails is still totalled over the lines that parse, for the DPO to see what it claims, but it
is marked as failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oda_fed.audit.verify import LogReport, _iter_entries, verify_dir

__all__ = ["CrossingTotal", "LogSummary", "summarise_dir"]


@dataclass(frozen=True)
class CrossingTotal:
    """Every crossing of one kind from one sender to one recipient, in one log.

    Attributes
    ----------
    sender, recipient
        The parties, as the log names them.
    kind
        The message kind, e.g. ``"clk_chunk"``.
    messages
        How many entries.
    records
        Records they carried, summed.
    bytes
        Payload bytes they carried, summed.
    """

    sender: str
    recipient: str
    kind: str
    messages: int
    records: int
    bytes: int


@dataclass(frozen=True)
class LogSummary:
    """One log's verification and its crossings, sorted by sender, recipient and kind."""

    log: LogReport
    crossings: list[CrossingTotal]


def _totals(path: Path) -> list[CrossingTotal]:
    sums: dict[tuple[str, str, str], list[int]] = {}
    for _, entry in _iter_entries(path):
        total = sums.setdefault((entry.sender, entry.recipient, entry.kind), [0, 0, 0])
        total[0] += 1
        total[1] += entry.records
        total[2] += entry.bytes
    return [CrossingTotal(*key, *sums[key]) for key in sorted(sums)]


def summarise_dir(directory: Path) -> list[LogSummary]:
    """Verify and total every ``*.jsonl`` log below ``directory``, sorted by path.

    Raises
    ------
    AuditError
        If ``directory`` is not a folder.

    Examples
    --------
    >>> [(s.log.ok, len(s.crossings)) for s in summarise_dir(Path("audit"))]  # doctest: +SKIP
    [(True, 4), (True, 4)]
    """
    return [
        LogSummary(log=report, crossings=_totals(report.path)) for report in verify_dir(directory)
    ]
