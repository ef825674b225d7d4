"""Round deadlines: which rounds are overdue, what they were waiting for, when to look again.

A project's ``[rounds] deadline_hours`` bounds how long a round may take before its products are
released. The lifecycle cancels a round that is still not released at its deadline, so one
partner that never connects cannot hold up the rounds after it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from oda_fed.coordinator import release
from oda_fed.coordinator.db import parse_stamp
from oda_fed.coordinator.state import CoordinatorState
from oda_fed.coordinator.states import CANCELLABLE
from oda_fed.coordinator.store import Round
from oda_fed.transport.protocol import RoundState

#: The longest the lifecycle's worker sleeps between looks at the deadlines, in seconds.
MAX_NAP = 60.0


def overdue(state: CoordinatorState, *, now: datetime) -> list[tuple[Round, str]]:
    """Rounds not yet released whose deadline has passed, each with what it was waiting for."""
    return [
        (r, waiting_for(state, r))
        for r in state.store.rounds.active()
        if r.state in CANCELLABLE and r.deadline and parse_stamp(r.deadline) <= now
    ]


def waiting_for(state: CoordinatorState, r: Round) -> str:
    """What a round is waiting for, in words for the operator and the partners (no records)."""
    uploads = state.store.uploads
    if r.state in (RoundState.OPEN, RoundState.UPLOADING):
        late = [p for p in state.partners if not uploads.complete(round_id=r.round_id, partner=p)]
        return "waiting for the CLKs of " + ", ".join(late)
    if r.state is RoundState.ANALYSING:
        return "waiting for " + ", ".join(release.missing_uploads(state, r.round_id))
    if r.state is RoundState.AWAITING_RELEASE:
        return "waiting for an operator to release its products"
    return str(r.state)


def nap(state: CoordinatorState) -> float:
    """Seconds until the next deadline of a round under way (at most :data:`MAX_NAP`)."""
    due = [parse_stamp(r.deadline) for r in state.store.rounds.active() if r.deadline]
    if not due:
        return MAX_NAP
    left = (min(due) - datetime.now(UTC)).total_seconds()
    return min(MAX_NAP, max(0.05, left))
