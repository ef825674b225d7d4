"""Connected nodes and the instructions queued for each: one live session per partner, bound to
the certificate it connected with.

A partner's session is its node's control stream (``Connect``). While one is live it belongs to
one certificate: a reconnect with the same certificate (after a network fault the old stream may
not have been noticed to be dead yet) replaces the old stream, but another certificate naming the
same partner is refused (:class:`SessionTaken`) until the session ends. The coordinator's calls
that act for a partner check the caller against the holder (:func:`oda_fed.coordinator.nodes.bound`).

Generic over the instruction type (the servicer's generated ``Instruction``), so this module needs
only an ``instruction_id`` and stays free of generated code.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar


class Queued(Protocol):
    """What a session needs of an instruction: the id that makes offering it idempotent."""

    @property
    def instruction_id(self) -> str: ...


Item = TypeVar("Item", bound=Queued)


@dataclass(frozen=True)
class Holder:
    """The certificate a live session was opened with."""

    fingerprint: str
    serial: str
    #: When the certificate expires.
    not_after: datetime = datetime.max.replace(tzinfo=UTC)
    since: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class SessionTaken(Exception):
    """Another certificate holds the partner's live session."""

    def __init__(self, holder: Holder) -> None:
        super().__init__(f"held by certificate {holder.serial} since {holder.since}")
        self.holder = holder


class Sessions(Generic[Item]):
    """Connected nodes, the certificate each connected with, and the instructions waiting for
    each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[Item | None]] = {}
        self._holders: dict[str, Holder] = {}
        self._sent: dict[str, set[str]] = {}

    def open(self, partner: str, holder: Holder) -> queue.Queue[Item | None]:
        """Open ``partner``'s session for ``holder``.

        Raises
        ------
        SessionTaken
            While a session of ``partner`` is live under another certificate.
        """
        with self._lock:
            live = self._holders.get(partner)
            if live is not None and live.fingerprint != holder.fingerprint:
                raise SessionTaken(live)
            old = self._queues.get(partner)
            if old is not None:
                old.put(None)  # a reconnect with the same certificate replaces the old stream
            q: queue.Queue[Item | None] = queue.Queue()
            self._queues[partner] = q
            self._holders[partner] = holder
            self._sent[partner] = set()
            return q

    def holder(self, partner: str) -> Holder | None:
        """The certificate ``partner``'s live session belongs to; None when it has none."""
        with self._lock:
            return self._holders.get(partner)

    def close(self, partner: str, q: queue.Queue) -> None:
        with self._lock:
            if self._queues.get(partner) is q:
                self._drop(partner)

    def end(self, partner: str) -> None:
        """End ``partner``'s session (its node reconnects), e.g. when the secret it said hello
        with is superseded."""
        with self._lock:
            q = self._drop(partner)
        if q is not None:
            q.put(None)

    def end_revoked(self, serials: frozenset[str]) -> list[str]:
        """End every session held by a certificate with one of these serials; their partners."""
        with self._lock:
            ended = [p for p, h in self._holders.items() if h.serial in serials]
            queues = [self._drop(p) for p in ended]
        for q in queues:
            if q is not None:
                q.put(None)
        return ended

    def _drop(self, partner: str) -> queue.Queue[Item | None] | None:
        self._holders.pop(partner, None)
        self._sent.pop(partner, None)
        return self._queues.pop(partner, None)

    def connected(self) -> set[str]:
        with self._lock:
            return set(self._queues)

    def offer(self, partner: str, instruction: Item) -> bool:
        """Queue an instruction unless this session already has it."""
        with self._lock:
            q = self._queues.get(partner)
            if q is None or instruction.instruction_id in self._sent[partner]:
                return False
            self._sent[partner].add(instruction.instruction_id)
            q.put(instruction)
            return True

    def shutdown(self) -> None:
        with self._lock:
            for q in self._queues.values():
                q.put(None)
