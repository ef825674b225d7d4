"""Start-up checks of the coordinator's stored state: a damaged database is refused, and so is
an empty one when the audit log shows that rounds ran before, unless the operator accepts it.

A database that was deleted, truncated to zero bytes or replaced by a new one would otherwise
start empty without a word: every earlier round's uploads, entity ids and history gone.
"""

from __future__ import annotations

from pathlib import Path

from oda_fed.audit import read_entries
from oda_fed.coordinator.store import Store
from oda_fed.errors import StateError
from oda_fed.transport.crossing import Crossings
from oda_fed.transport.protocol import COORDINATOR, AuditKind


def open_store(
    path: Path, *, audit_path: Path, crossings: Crossings, accept_empty_state: bool
) -> Store:
    """Open the coordinator's database at ``path``, refusing lost state.

    Raises
    ------
    StateError
        The file is damaged, or it is empty (missing, zero bytes, or holding no round) while the
        audit log at ``audit_path`` shows earlier rounds and ``accept_empty_state`` is False. A
        missing or zero-byte file is refused before anything is created.
    AuditError
        The database is empty and the audit log, read to count earlier rounds, fails
        verification.
    """
    how = "missing" if not path.exists() else "zero_bytes" if path.stat().st_size == 0 else ""
    earlier = _check_empty(path, how, audit_path, accept=accept_empty_state) if how else 0
    store = Store(path)
    try:
        if not how and store.rounds.get() is None:
            how = "no_rounds"
            earlier = _check_empty(path, how, audit_path, accept=accept_empty_state)
    except BaseException:
        store.close()
        raise
    if earlier:  # accepted: the loss is on the record
        crossings.record(
            sender=COORDINATOR,
            recipient=COORDINATOR,
            kind=AuditKind.ACCEPT_EMPTY_STATE,
            detail={"database": how, "earlier_rounds": earlier},
        )
    return store


def _check_empty(path: Path, how: str, audit_path: Path, *, accept: bool) -> int:
    """The number of earlier rounds; raise unless there are none or the loss is accepted."""
    earlier = _earlier_rounds(audit_path)
    if earlier and not accept:
        raise _refusal(path, how, earlier, audit_path)
    return earlier


def _earlier_rounds(audit_path: Path) -> int:
    """How many rounds the coordinator's audit log shows were started since state was last
    accepted as lost (so an accepted loss is not refused again at the next start)."""
    if not audit_path.exists():
        return 0
    started: set[str | None] = set()
    for entry in read_entries(audit_path):
        if entry.kind == AuditKind.START_ROUND.value:
            started.add(entry.round)
        elif entry.kind == AuditKind.ACCEPT_EMPTY_STATE.value:
            started.clear()
    return len(started)


def _refusal(path: Path, how: str, earlier: int, audit_path: Path) -> StateError:
    what = {
        "missing": "is missing",
        "zero_bytes": "is empty (zero bytes)",
        "no_rounds": "holds no rounds",
    }[how]
    return StateError(
        f"the coordinator's database {path} {what}, but its audit log {audit_path} shows "
        f"{earlier} earlier round(s): the state was lost. Restore state_dir from your latest "
        "backup and start again. If there is no backup and you accept that every earlier "
        "round's uploads, entity ids and history are gone, start with `oda-fed coordinator "
        "serve --accept-empty-state` (this is written to the audit log)"
    )
