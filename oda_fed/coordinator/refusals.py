"""Refusals written to the audit log without letting a flood of bad calls flood the log.

The first refusal of a caller under one kind is written at once, with its reason. Further ones
from that caller under that kind within :data:`INTERVAL` seconds are counted, and written as one
entry when the interval ends (``detail.repeats``: how many; the last one's method and reason),
or when the coordinator stops. No refusal goes uncounted; 3,000 bad calls in two seconds cost two
fsynced lines, not 3,000.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from oda_fed.transport.crossing import Crossings
from oda_fed.transport.protocol import COORDINATOR, AuditKind

#: Seconds over which repeated refusals of one caller and kind are counted into one entry.
INTERVAL = 5.0

Detail = Mapping[str, str | int | float | bool]


@dataclass
class _Pending:
    since: float
    count: int = 0
    round_id: str | None = None
    detail: dict = field(default_factory=dict)


class RefusalTally:
    """The coordinator's refusals, counted per caller and kind over each interval."""

    def __init__(self, crossings: Crossings, *, interval: float = INTERVAL) -> None:
        self._crossings = crossings
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, AuditKind], _Pending] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="refusals", daemon=True)
        self._thread.start()

    def record(
        self, *, who: str | None, kind: AuditKind, round_id: str | None, detail: Detail
    ) -> None:
        """One refusal: written now if it is the first of its caller and kind in the interval,
        counted otherwise."""
        sender = who or "unknown"
        key = (sender, kind)
        now = time.monotonic()
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None:
                pending.count += 1
                pending.round_id, pending.detail = round_id, dict(detail)
                return
            self._pending[key] = _Pending(since=now)
        self._write(sender, kind, round_id, dict(detail))

    def _write(self, sender: str, kind: AuditKind, round_id: str | None, detail: dict) -> None:
        self._crossings.record(
            sender=sender, recipient=COORDINATOR, kind=kind, round_id=round_id, detail=detail
        )

    def flush(self, *, everything: bool = False) -> None:
        """Write the counts of intervals that have ended (all of them with ``everything``)."""
        now = time.monotonic()
        with self._lock:
            due = [
                (key, p)
                for key, p in self._pending.items()
                if everything or now - p.since >= self._interval
            ]
            for key, _ in due:
                del self._pending[key]
        for (sender, kind), p in due:
            if p.count:
                self._write(sender, kind, p.round_id, {**p.detail, "repeats": p.count})

    def _run(self) -> None:
        while not self._stop.wait(self._interval / 4):
            self.flush()

    def close(self) -> None:
        """Stop counting and write every count still open."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush(everything=True)
