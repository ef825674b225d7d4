"""The one thread that moves rounds: each round as it is scheduled, and every deadline when due."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class RoundWorker:
    """Calls ``advance(round_id)`` for each scheduled round, one at a time, and ``expire()``
    whenever it wakes, waking at the latest after ``nap()`` seconds."""

    def __init__(
        self,
        *,
        advance: Callable[[str], None],
        expire: Callable[[], object],
        nap: Callable[[], float],
    ) -> None:
        self._advance, self._expire, self._nap = advance, expire, nap
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="rounds", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout: float = 30.0) -> None:
        """Finish the step under way, then stop."""
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def schedule(self, round_id: str) -> None:
        self._queue.put(round_id)

    def _run(self) -> None:
        while True:
            try:
                round_id = self._queue.get(timeout=self._nap())
            except queue.Empty:
                round_id = ""  # woken by a deadline
            if round_id is None:
                return
            try:
                self._expire()
            except Exception:  # a failing check must not stop the rounds
                log.exception("checking round deadlines failed")
            if round_id:
                self._advance(round_id)
