"""Retention: a finished round's CLKs are deleted once the project's retention period has passed.

Each deletion is written to the coordinator's audit log, with the number of CLKs deleted.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from oda_fed.coordinator.state import CoordinatorState
from oda_fed.transport.protocol import COORDINATOR, AuditKind, RoundState

log = logging.getLogger(__name__)


def enforce(state: CoordinatorState, *, now: datetime | None = None) -> list[str]:
    """Delete the CLKs of finished rounds older than the project's retention; return their ids."""
    days = state.project.retention.clk_days
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    finished = tuple(s.value for s in RoundState if s.finished)
    deleted = []
    for round_id, records in state.store.uploads.expired_clks(finished=finished, older_than=cutoff):
        state.store.uploads.delete_clks(round_id)
        log.info("round %s: deleted %d CLKs (retention %d days)", round_id, records, days)
        state.crossings.record(
            sender=COORDINATOR,
            recipient=COORDINATOR,
            kind=AuditKind.CLKS_DELETED,
            records=records,
            round_id=round_id,
            detail={"clk_days": days},
        )
        deleted.append(round_id)
    return deleted
