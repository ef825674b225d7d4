"""Connected nodes and the instructions queued for each, one control stream per partner.

Generic over the instruction type (the servicer's generated ``Instruction``), so this module needs
only an ``instruction_id`` and stays free of generated code.
"""

from __future__ import annotations

import queue
import threading
from typing import Generic, Protocol, TypeVar


class Queued(Protocol):
    """What a session needs of an instruction: the id that makes offering it idempotent."""

    @property
    def instruction_id(self) -> str: ...


Item = TypeVar("Item", bound=Queued)


class Sessions(Generic[Item]):
    """Connected nodes and the instructions waiting for each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[Item | None]] = {}
        self._sent: dict[str, set[str]] = {}

    def open(self, partner: str) -> queue.Queue[Item | None]:
        with self._lock:
            old = self._queues.get(partner)
            if old is not None:
                old.put(None)  # a reconnect replaces the old stream
            q: queue.Queue[Item | None] = queue.Queue()
            self._queues[partner] = q
            self._sent[partner] = set()
            return q

    def close(self, partner: str, q: queue.Queue) -> None:
        with self._lock:
            if self._queues.get(partner) is q:
                del self._queues[partner]
                self._sent.pop(partner, None)

    def end(self, partner: str) -> None:
        """End ``partner``'s session (its node reconnects), e.g. when the secret it said hello
        with is superseded."""
        with self._lock:
            q = self._queues.pop(partner, None)
            self._sent.pop(partner, None)
        if q is not None:
            q.put(None)

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
