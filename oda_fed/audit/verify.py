"""Verifying audit logs, alone and against each other, as a DPO does with ``oda-fed audit verify``.

:func:`verify_log` walks one log and reports every line that breaks the format, its own hash, the
sequence or the hash chain, each problem naming the line and what it means. :func:`cross_check`
compares the logs of two or more parties: a crossing that one side logged must be in the other
side's log too.

A hash chain alone only catches edits by someone who does not rewrite every later entry, and it
cannot see entries cut from the end. Comparing each side's log with the other's (and, later,
signed checkpoints) is what catches a party that rewrites its own log.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from oda_fed.audit.checkpoint import is_checkpoint_file
from oda_fed.audit.entry import (
    FORMAT_VERSION,
    ZERO_HASH,
    AuditEntry,
    canonical_json,
    field_problems,
    is_local_kind,
    leaf_hash,
)
from oda_fed.audit.merkle import MerkleTree
from oda_fed.errors import AuditError

_HEX64 = re.compile(r"[0-9a-f]{64}")

_EDITED = "entry hash does not match its contents — the entry was edited"


@dataclass(frozen=True)
class LogReport:
    """The result of verifying one audit log.

    Attributes
    ----------
    path
        The log file.
    party
        Who wrote the log (from its first entry), or None if it has no readable entry.
    entries
        How many lines parsed as JSON objects.
    ok
        True if no problem was found.
    problems
        Human-readable problems, each naming the line (and seq where known).
    head
        Hash of the last entry: the value to compare with a checkpoint or the other side's records.

    Examples
    --------
    >>> report = verify_log(Path("audit/council.jsonl"))  # doctest: +SKIP
    >>> report.ok, report.entries  # doctest: +SKIP
    (True, 42)
    """

    path: Path
    party: str | None
    entries: int
    ok: bool
    problems: list[str]
    head: str | None = None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _parse(raw: bytes) -> Any:
    # NaN and Infinity are not JSON, and a line nested thousands deep is garbage, not an entry.
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _Chain:
    """Walks a log line by line, remembering just enough to check the next line."""

    def __init__(self, tree: MerkleTree | None = None) -> None:
        self.tree = tree
        self.problems: list[str] = []
        self.party: str | None = None
        self.entries = 0
        self.head: str | None = None
        self.expected_seq: int | None = 0
        self.prev_hash: str | None = ZERO_HASH
        self.prev_in_order = True

    def _lost_track(self) -> None:
        # After a line that cannot be read, the next line's seq and prev cannot be checked.
        self.expected_seq, self.prev_hash, self.prev_in_order = None, None, False

    def check(self, number: int, raw: bytes, *, last_without_newline: bool = False) -> None:
        label = f"line {number}"
        if not raw.strip():
            self.problems.append(f"{label}: blank line — the file was edited")
            return
        try:
            obj = _parse(raw)
        except (UnicodeDecodeError, ValueError, RecursionError):
            what = "incomplete: the last write was cut off" if last_without_newline else "garbled"
            self.problems.append(f"{label}: not valid JSON — the line is truncated or {what}")
            self._lost_track()
            return
        if not isinstance(obj, dict):
            self.problems.append(f"{label}: not a JSON object — the line was garbled or replaced")
            self._lost_track()
            return
        self.entries += 1
        seq = obj.get("seq")
        if _is_seq(seq):
            label = f"line {number} (seq {seq})"
        if obj.get("v") != FORMAT_VERSION:
            self.problems.append(
                f"{label}: unknown format version {str(obj.get('v'))[:20]!r} — this verifier "
                f"reads version {FORMAT_VERSION}; use the oda-fed release that wrote the log"
            )
            self._lost_track()
            return
        self.problems += [f"{label}: {p}" for p in field_problems(obj)]
        stored = obj.get("hash")
        if stored != leaf_hash(obj):
            self.problems.append(f"{label}: {_EDITED}")
        elif raw != canonical_json(obj):
            self.problems.append(
                f"{label}: not in canonical form (key order, spacing or number format changed) "
                "— the line was rewritten"
            )
        if last_without_newline:
            self.problems.append(f"{label}: no newline at the end — the last write was cut off")
        self._check_party(label, obj.get("party"))
        in_order = self._check_seq(label, seq)
        if in_order and self.prev_in_order and self.prev_hash is not None:
            self._check_prev(label, obj.get("prev"))
        self.prev_in_order = in_order
        if _is_seq(seq):
            # Never step back: after a swapped pair, the line following it is in order again.
            self.expected_seq = max(seq + 1, self.expected_seq or 0)
        else:
            self.expected_seq = None
        self.prev_hash = stored if isinstance(stored, str) else None
        self.head = self.prev_hash
        if (
            self.tree is not None
            and self.prev_hash is not None
            and _HEX64.fullmatch(self.prev_hash)
        ):
            self.tree.append(bytes.fromhex(self.prev_hash))

    def _check_party(self, label: str, party: object) -> None:
        if not isinstance(party, str):
            return
        if self.party is None:
            self.party = party
        elif party != self.party:
            self.problems.append(
                f"{label}: written by {party[:64]!r}, but earlier entries by {self.party!r} "
                "— entries from another log were mixed in"
            )

    def _check_seq(self, label: str, seq: object) -> bool:
        expected = self.expected_seq
        if not _is_seq(seq):
            return False
        if expected is None or seq == expected:
            return True
        assert isinstance(seq, int)
        if seq > expected:
            gap = f"seq {expected} is" if seq == expected + 1 else f"seqs {expected}-{seq - 1} are"
            self.problems.append(
                f"{label}: expected seq {expected}; {gap} missing — entries were deleted or moved"
            )
        else:
            self.problems.append(
                f"{label}: seq goes back (expected {expected}) — entries were reordered "
                "or duplicated"
            )
        return False

    def _check_prev(self, label: str, prev: object) -> None:
        if prev == self.prev_hash:
            return
        if self.prev_hash == ZERO_HASH:
            self.problems.append(f"{label}: prev of the first entry must be 64 zeros")
        else:
            self.problems.append(
                f"{label}: prev does not match the hash of the entry before it — an entry before "
                "it was edited, deleted, inserted or moved"
            )


def verify_log(path: Path) -> LogReport:
    """Verify one audit log file: format, entry hashes, sequence and hash chain.

    Detects an edited entry (hash mismatch), a deleted entry (seq gap or prev mismatch),
    reordered or duplicated entries, blank, truncated or garbled lines, a missing final newline,
    unknown format versions and entries from another party's log. An empty file is a valid log.

    Parameters
    ----------
    path
        A ``.jsonl`` audit log.

    Returns
    -------
    LogReport
        Never raises for a bad log; an unreadable file gives a report with one problem.

    Examples
    --------
    >>> report = verify_log(Path("audit/council.jsonl"))  # doctest: +SKIP
    >>> report.problems  # doctest: +SKIP
    ['line 7 (seq 6): entry hash does not match its contents — the entry was edited']
    """
    return _verify(Path(path))


def _verify(path: Path, *, tree: MerkleTree | None = None, end: int | None = None) -> LogReport:
    """:func:`verify_log`, adding each entry's hash to ``tree`` and stopping at byte ``end``."""
    chain = _Chain(tree)
    try:
        # Streamed line by line: a log kept for years can be larger than memory.
        with path.open("rb") as handle:
            offset = 0
            for number, raw in enumerate(handle, start=1):
                offset += len(raw)
                if end is not None and offset > end:
                    break
                if raw.endswith(b"\n"):
                    chain.check(number, raw[:-1])
                else:  # only the last line can lack its newline
                    chain.check(number, raw, last_without_newline=True)
    except OSError as exc:
        problem = f"{path}: cannot read the log: {exc.strerror or exc}"
        return LogReport(path=path, party=None, entries=0, ok=False, problems=[problem])
    return LogReport(
        path=path,
        party=chain.party,
        entries=chain.entries,
        ok=not chain.problems,
        problems=chain.problems,
        head=chain.head,
    )


def verify_dir(directory: Path) -> list[LogReport]:
    """Verify every ``*.jsonl`` file below ``directory`` (recursively), sorted by path.

    Raises
    ------
    AuditError
        If ``directory`` is not a folder.

    Examples
    --------
    >>> [r.ok for r in verify_dir(Path("audit"))]  # doctest: +SKIP
    [True, True]
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AuditError(f"{directory} is not a folder; pass the folder that holds the audit logs")
    return [verify_log(p) for p in log_files(directory)]


def log_files(directory: Path) -> list[Path]:
    """The audit logs below ``directory``: every ``*.jsonl`` but the checkpoint files."""
    return [
        p for p in sorted(directory.rglob("*.jsonl")) if p.is_file() and not is_checkpoint_file(p)
    ]


def _iter_entries(path: Path) -> Iterator[tuple[int, AuditEntry]]:
    """Yield (line number, entry) for every well-formed line, skipping the rest."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                obj = _parse(raw)
                if isinstance(obj, dict):
                    yield number, AuditEntry.from_json(obj)
            except (UnicodeDecodeError, ValueError, RecursionError, AuditError):
                continue


def read_entries(path: Path) -> list[AuditEntry]:
    """Read every entry of a log that passes :func:`verify_log`, e.g. for a DPO report.

    Raises
    ------
    AuditError
        If the log fails verification; the message gives the first problem.

    Examples
    --------
    >>> [e.kind for e in read_entries(Path("audit/council.jsonl"))]  # doctest: +SKIP
    ['clk_upload', 'entity_ids']
    """
    report = verify_log(path)
    if not report.ok:
        raise AuditError(
            f"audit log {path} fails verification ({len(report.problems)} problem(s)); "
            f"first: {report.problems[0]}"
        )
    return [entry for _, entry in _iter_entries(Path(path))]


class _Seen(NamedTuple):
    path: Path
    line: int
    entry: AuditEntry


def is_local(entry: AuditEntry) -> bool:
    return is_local_kind(entry.kind)


def _crossing(entry: AuditEntry) -> tuple[str, str, str, str | None, str]:
    return (entry.sender, entry.recipient, entry.kind, entry.round, entry.payload_sha256)


def _delivered(entry: AuditEntry) -> bool:
    """A crossing as first delivered: not a local act, a resend or a message dropped unread."""
    detail = entry.detail
    return not is_local(entry) and not detail.get("resend") and not detail.get("discarded")


def _unmatched(mine: list[_Seen], theirs: list[_Seen], *, other: str) -> list[str]:
    available = Counter(_crossing(s.entry) for s in theirs)
    counts = {_crossing(s.entry): (s.entry.records, s.entry.bytes) for s in theirs}
    problems = []
    for seen in mine:
        key = _crossing(seen.entry)
        e = seen.entry
        where = (
            f"{seen.path} line {seen.line} (seq {e.seq}): {e.kind} {e.sender} → {e.recipient}, "
            f"round {e.round or '-'}, payload {e.payload_sha256[:16]}…"
        )
        if available[key] > 0:
            available[key] -= 1
            if counts[key] != (e.records, e.bytes) and e.party == e.sender:
                records, size = counts[key]
                problems.append(
                    f"{where}: {e.party} logged {e.records} records and {e.bytes} bytes, {other} "
                    f"{records} records and {size} bytes for the same message — one side's "
                    "counts were rewritten"
                )
            continue
        problems.append(f"{where} is in {e.party}'s log but missing from {other}'s log")
    return problems


def cross_check(logs: Iterable[Path | LogReport]) -> list[str]:
    """Compare the logs of two or more parties: every crossing must be logged on both sides.

    A crossing is identified by (sender, recipient, kind, round, payload_sha256), and both sides
    must log the same records and bytes for it. Local events (kinds starting ``refused:``,
    ``retention:``, ``operator:``, ``lifecycle:`` or ``audit:``) are one party's own record and
    are not matched; nor are entries marked ``resend`` (the same message again) or
    ``discarded`` (dropped unread, to be delivered again).
    For each pair of parties whose logs are both given, each crossing between them that one side
    logged must appear in the other side's log as often. Entries are matched by content, not by time
    or position, so the logs need not interleave. Lines that do not parse are skipped here;
    :func:`verify_log` reports them. Several files from one party (e.g. rotated logs) are merged,
    and the same entry given twice counts once.

    Parameters
    ----------
    logs
        Log files, or the reports of :func:`verify_dir`.

    Returns
    -------
    list[str]
        One message per crossing missing from one side, naming the file, line and seq where it
        was found; empty if the logs agree.

    Examples
    --------
    >>> cross_check(verify_dir(Path("audit")))  # doctest: +SKIP
    ["audit/council.jsonl line 3 (seq 2): clk_upload council → coordinator, round r1, payload
    9f86d081884c7d65… is in council's log but missing from coordinator's log"]
    """
    by_party: dict[str, dict[str, _Seen]] = {}
    for item in logs:
        path = item.path if isinstance(item, LogReport) else Path(item)
        for line, entry in _iter_entries(path):
            by_party.setdefault(entry.party, {}).setdefault(entry.hash, _Seen(path, line, entry))
    problems: list[str] = []
    parties = sorted(by_party)
    for sender in parties:
        for recipient in parties:
            if sender == recipient:
                continue
            sides = {}
            for holder in (sender, recipient):
                sides[holder] = [
                    s
                    for s in by_party[holder].values()
                    if s.entry.sender == sender
                    and s.entry.recipient == recipient
                    and _delivered(s.entry)
                ]
            problems += _unmatched(sides[sender], sides[recipient], other=recipient)
            problems += _unmatched(sides[recipient], sides[sender], other=sender)
    return problems
