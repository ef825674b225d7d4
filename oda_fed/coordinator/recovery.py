"""Start-up checks of the coordinator's stored state: a damaged database is refused, and so is
lost state that the audit log shows was in use, unless the operator accepts the loss.

What is guarded, and what its loss would otherwise do without a word:

- the database (missing, zero bytes, or new while earlier rounds were started): every earlier
  round's uploads, entity ids and history gone;
- the rounding key ``disclosure.key`` and the release ledger (missing or zero bytes while rounds
  with disclosure-checked tables were released): a fresh key rounds the same cells differently,
  so two roundings of one count give it away, and an empty ledger lets a new release be
  differenced against an earlier one;
- the pseudonym key ``pseudonyms.key`` (missing or zero bytes while entity ids were delivered):
  every partner would get new pseudonyms for the same entities, breaking stable entity ids.

Each is refused before anything is created. An accepted loss is written to the audit log
(``operator:accept_empty_state``, naming what was lost), and from then on only rounds after it
count as evidence against that part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL

from oda_fed.audit import read_entries
from oda_fed.coordinator.pseudonyms import KEY_FILE as PSEUDONYMS_KEY_FILE
from oda_fed.coordinator.store import Store
from oda_fed.errors import StateError
from oda_fed.products.releases import KEY_FILE as DISCLOSURE_KEY_FILE
from oda_fed.transport.crossing import Crossings
from oda_fed.transport.protocol import COORDINATOR, AuditKind

__all__ = ["ledger_path_for", "open_store"]


@dataclass(frozen=True)
class _Part:
    """A part of the state guarded against loss."""

    #: Its key in an ``operator:accept_empty_state`` entry's detail (its value says how it was
    #: lost), and the detail's key for how many rounds needed it.
    name: str
    rounds_key: str
    what: str
    #: The rounds that needed it, as in "the audit log shows 2 {needed_by}".
    needed_by: str
    #: What accepting its loss gives up.
    loses: str


DATABASE = _Part(
    name="database",
    rounds_key="earlier_rounds",
    what="the coordinator's database",
    needed_by="earlier round(s)",
    loses="every earlier round's uploads, entity ids and history are gone",
)
DISCLOSURE_KEY = _Part(
    name="disclosure_key",
    rounds_key="disclosure_key_rounds",
    what="the rounding key",
    needed_by="released round(s) whose tables were rounded with it",
    loses="a new key rounds the cells published before differently, so a count published twice "
    "can be worked out from its two roundings",
)
LEDGER = _Part(
    name="ledger",
    rounds_key="ledger_rounds",
    what="the release ledger",
    needed_by="released round(s) whose cells it held",
    loses="new releases are not checked against earlier ones, so a small change between two "
    "releases (differencing) is no longer held",
)
PSEUDONYMS_KEY = _Part(
    name="pseudonyms_key",
    rounds_key="pseudonyms_key_rounds",
    what="the pseudonym key",
    needed_by="round(s) whose entity ids were delivered under it",
    loses="every partner gets new pseudonyms for the same entities, and the coordinator can no "
    "longer map earlier ones back",
)
PARTS = (DATABASE, DISCLOSURE_KEY, LEDGER, PSEUDONYMS_KEY)
_RESTORE_POSTGRES = "the PostgreSQL database (pg_restore of your latest pg_dump) and state_dir"
_HOW = {
    "missing": "is missing",
    "zero_bytes": "is empty (zero bytes)",
    "no_rounds": "holds no rounds",
}


def ledger_path_for(state_dir: Path, fingerprint: str) -> Path:
    """The release ledger of the project with ``fingerprint`` in a coordinator's state folder,
    where :attr:`CoordinatorState.releases <oda_fed.coordinator.state.CoordinatorState.releases>`
    keeps it."""
    return Path(state_dir) / f"ledger-{fingerprint.rpartition(':')[2][:16]}.sqlite"


def open_store(
    path: Path,
    *,
    audit_path: Path,
    crossings: Crossings,
    accept_empty_state: bool,
    database: URL | None = None,
) -> Store:
    """Open the coordinator's database at ``path`` (or on PostgreSQL at ``database``, whose
    lock it then holds), refusing lost state in ``path``'s folder.

    Raises
    ------
    StateError
        The database is damaged; or a guarded part of the state (the database, the rounding key,
        the release ledger, the pseudonym key) is lost while the audit log at ``audit_path``
        shows it was in use, and ``accept_empty_state`` is False. Every loss is named in one
        message, and nothing is created or changed before it is raised.
    AuditError
        Something is lost and the audit log, read to see whether it was in use, fails
        verification.
    """
    state_dir = path.parent
    files = {
        DISCLOSURE_KEY: state_dir / DISCLOSURE_KEY_FILE,
        LEDGER: ledger_path_for(state_dir, crossings.project),
        PSEUDONYMS_KEY: state_dir / PSEUDONYMS_KEY_FILE,
    }
    lost = {part: how for part, file in files.items() if (how := _how_lost(file))}
    where: Path | URL = path if database is None else database
    # A missing or zero-byte file is not made yet; a PostgreSQL database is there or refused.
    how = "" if database is not None else _how_lost(path)
    store = None if how else Store(where, exclusive=True)
    try:
        if store is not None and store.rounds.get() is None:
            how = "no_rounds"
        if how:
            lost = {DATABASE: how, **lost}
        needed = _needed(audit_path) if lost else {}
        counted = {part: needed[part] for part in lost if needed[part]}
        if counted and not accept_empty_state:
            shown = path if store is None else store.where
            raise _refusal({DATABASE: shown, **files}, lost, counted, audit_path)
    except BaseException:
        if store is not None:
            store.close()
        raise
    if store is None:
        store = Store(where, exclusive=True)
    if counted:  # accepted: the loss is on the record
        for part in counted:
            if part is not DATABASE:
                files[part].unlink(missing_ok=True)  # an empty file would not be made anew
        detail: dict[str, str | int] = {}
        for part, rounds in counted.items():
            detail |= {part.name: lost[part], part.rounds_key: rounds}
        crossings.record(
            sender=COORDINATOR,
            recipient=COORDINATOR,
            kind=AuditKind.ACCEPT_EMPTY_STATE,
            detail=detail,
        )
    return store


def _how_lost(path: Path) -> str:
    if not path.exists():
        return "missing"
    return "zero_bytes" if path.stat().st_size == 0 else ""


def _needed(audit_path: Path) -> dict[_Part, int]:
    """For each part, how many rounds the coordinator's audit log shows needed it since its loss
    was last accepted (so an accepted loss is not refused again at the next start).

    The database is needed by every round started; the rounding key and ledger by every round
    released with tables that passed disclosure control; the pseudonym key by every round whose
    entity ids were sent to a node.
    """
    since: dict[_Part, set[str | None]] = {part: set() for part in PARTS}
    checked: set[str | None] = set()
    if audit_path.exists():
        for entry in read_entries(audit_path):
            kind = entry.kind
            if kind == AuditKind.ACCEPT_EMPTY_STATE.value:
                for part in PARTS:
                    if part.name in entry.detail:
                        since[part].clear()
            elif kind == AuditKind.START_ROUND.value:
                since[DATABASE].add(entry.round)
            elif kind in (AuditKind.RELEASE_ROUND.value, AuditKind.AUTO_RELEASE.value):
                since[DISCLOSURE_KEY].add(entry.round)
                since[LEDGER].add(entry.round)
            elif kind == AuditKind.DISCLOSURE_CHECKED.value:
                checked.add(entry.round)
            elif kind == AuditKind.ENTITY_CHUNK.value and entry.sender == COORDINATOR:
                since[PSEUDONYMS_KEY].add(entry.round)
    return {
        part: len(rounds & checked if part in (DISCLOSURE_KEY, LEDGER) else rounds)
        for part, rounds in since.items()
    }


def _refusal(
    paths: Mapping[_Part, Path | str],
    lost: Mapping[_Part, str],
    counted: Mapping[_Part, int],
    audit_path: Path,
) -> StateError:
    found = "; ".join(
        f"{part.what} {paths[part]} {_HOW[lost[part]]}, but the audit log shows {n} "
        f"{part.needed_by}"
        for part, n in counted.items()
    )
    gone = "; ".join(part.loses for part in counted)
    restore = (
        ("state_dir" if isinstance(paths[DATABASE], Path) else _RESTORE_POSTGRES)
        if DATABASE in counted
        else "these files ("
        + ", ".join(Path(paths[part]).name for part in counted)
        + ") into state_dir"
    )
    return StateError(
        f"{found} (audit log {audit_path}): the state was lost. Restore {restore} from your "
        "latest backup and start again. If there is no backup and you accept that "
        f"{gone}, start with `oda-fed coordinator serve --accept-empty-state` (this is "
        "written to the audit log)"
    )
