"""What the coordinator's handlers work over, and how they refuse a request.

:class:`CoordinatorState` is made once at start-up (:mod:`oda_fed.coordinator.server`): the pinned
project and the engine settings made from it, the store, the audit log, the connected nodes and
the round lifecycle. Handlers (:mod:`~oda_fed.coordinator.nodes`,
:mod:`~oda_fed.coordinator.operator`) are functions over a request and this state; they raise
:class:`Refusal` and never touch gRPC, so they can be tested without a server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from oda_fed.config import LoadedProject, Project
from oda_fed.coordinator.pseudonyms import Pseudonyms
from oda_fed.coordinator.refusals import RefusalTally
from oda_fed.coordinator.sessions import Sessions
from oda_fed.coordinator.store import Store
from oda_fed.durable import private_dir
from oda_fed.matching.executor import Executor
from oda_fed.matching.settings import LinkSettings
from oda_fed.monitoring.metrics import CoordinatorMetrics
from oda_fed.products.releases import PENDING, Releases
from oda_fed.transport.crossing import Crossings
from oda_fed.transport.messages import Instruction
from oda_fed.transport.protocol import CHUNK_RECORDS, COORDINATOR, UPLOADS_AT_ONCE, AuditKind, cut

if TYPE_CHECKING:
    from oda_fed.coordinator.lifecycle import Lifecycle


class Status(StrEnum):
    """Why a request is refused, as the caller is told (a gRPC status code's name)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    NOT_FOUND = "NOT_FOUND"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"


class Refusal(Exception):
    """A request the coordinator will not serve: the caller gets ``status`` and ``reason``, and
    the refusal is written to the audit log under ``kind`` (not at all when ``kind`` is None)."""

    def __init__(
        self,
        status: Status,
        reason: str,
        *,
        kind: AuditKind | None,
        round_id: str | None = None,
        detail: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.kind = kind
        self.round_id = round_id
        self.detail = dict(detail or {})


@dataclass
class CoordinatorState:
    """The coordinator's state, shared by every handler."""

    loaded: LoadedProject
    settings: LinkSettings
    store: Store
    crossings: Crossings
    output_dir: Path
    state_dir: Path
    chunk_records: int = CHUNK_RECORDS
    #: The boundary files maps are drawn on, by boundary set name (coordinator.toml).
    boundaries: Mapping[str, Path] = field(default_factory=dict)
    sessions: Sessions[Instruction] = field(default_factory=Sessions)
    upload_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(UPLOADS_AT_ONCE)
    )
    #: Whether the CA has revoked the certificate with this serial (hex), as of its CRL now.
    revoked: Callable[[str], bool] = lambda _serial: False
    #: What the coordinator counts for Prometheus (served only when the configuration says).
    metrics: CoordinatorMetrics = field(default_factory=CoordinatorMetrics)
    #: Opens where a round's matching runs (a Dask cluster when the configuration names one).
    executor: Callable[[], Executor] = Executor
    lifecycle: Lifecycle = field(init=False)

    @property
    def project(self) -> Project:
        return self.loaded.project

    @property
    def fingerprint(self) -> str:
        return self.loaded.fingerprint

    @property
    def partners(self) -> list[str]:
        return self.loaded.project.partner_ids

    @property
    def index_path(self) -> Path:
        """The project's linked index (used when it sets ``stable_entity_ids``)."""
        return index_path_for(self.state_dir, self.fingerprint)

    @cached_property
    def pseudonyms(self) -> Pseudonyms:
        """Each partner's own pseudonyms of entity ids, under the key in the state folder."""
        return Pseudonyms.load_or_create(self.state_dir)

    @cached_property
    def releases(self) -> Releases:
        """Disclosure control across this project's rounds: the rounding key and release ledger
        in the state folder; every table's decisions counted in the audit log."""

        def audit(round_id: str, table: str, decisions: dict[str, int]) -> None:
            self.crossings.record(
                sender=COORDINATOR,
                recipient=COORDINATOR,
                kind=AuditKind.DISCLOSURE_CHECKED,
                round_id=round_id,
                detail={"product": table, **decisions},
            )

        name = self.fingerprint.rpartition(":")[2][:16]
        private_dir(self.state_dir / PENDING)  # a release's true counts wait there
        return Releases.in_folder(self.state_dir, self.project, name=name, audit=audit)

    def log_refusal(self, refusal: Refusal, *, who: str | None) -> None:
        """Count a refusal, and write it to the audit log (if its kind says so)."""
        self.metrics.refused(kind=refusal.kind, code=refusal.status.value)
        if refusal.kind is None:
            return
        self.refusals.record(
            who=who,
            kind=refusal.kind,
            round_id=refusal.round_id,
            detail={**refusal.detail, "reason": cut(refusal.reason)},
        )

    @cached_property
    def refusals(self) -> RefusalTally:
        """Refusals for the audit log, repeats counted per caller and kind (a flood of bad
        calls must not become a flood of fsynced lines)."""
        return RefusalTally(self.crossings)


def index_path_for(state_dir: Path, fingerprint: str) -> Path:
    """The linked index file of the project with ``fingerprint`` in a coordinator's state folder.

    One file per signed project: a project amended and signed again starts a new index, so no
    entity id outlives the agreement it was issued under.

    Examples
    --------
    >>> index_path_for(Path("state"), "sha256:" + "ab" * 32).name
    'linked-abababababababab.index'
    """
    return state_dir / f"linked-{fingerprint.rpartition(':')[2][:16]}.index"
