"""What a node's parts work over: its config, the pinned project, its secret and its audit log.

Made once by :class:`oda_fed.node.agent.NodeAgent` when the node starts, after every check that
can fail before dialling out (the project's fingerprint, the certificate, the secret). A node that
agrees its secret through the coordinator takes it up with :meth:`NodeState.use_secret` once it
has it, and again, between sessions, when the partners rotate it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from oda_fed.config import LoadedProject, NodeConfig, Project
from oda_fed.durable import private_dir
from oda_fed.encoding.exact import derive_record_key
from oda_fed.monitoring.metrics import NodeMetrics
from oda_fed.node.rounds import RoundFiles
from oda_fed.node.sources import Layout
from oda_fed.pki.secret import forbidden_forms, key_check
from oda_fed.transport.crossing import Crossings
from oda_fed.transport.protocol import AuditKind

if TYPE_CHECKING:
    from oda_fed.products.releases import Releases


@dataclass
class NodeState:
    config: NodeConfig
    loaded: LoadedProject
    layout: Layout
    crossings: Crossings
    # Empty until the node holds a secret (read from its file, or agreed); see use_secret.
    secret: bytes = b""
    # 0 for a secret file; 1, 2, ... for a secret agreed through the coordinator.
    key_version: int = 0
    # Derived only when the signed project asks for record keys (stable_entity_ids).
    record_key: bytes | None = None
    rounds_closed: int = 0
    #: What the node counts for Prometheus (served only when node.toml says).
    metrics: NodeMetrics = field(default_factory=NodeMetrics)

    def use_secret(self, secret: bytes, *, version: int) -> None:
        """Take up ``secret`` (key ``version``): what encodes CLKs from now on, and what the audit
        log must never contain."""
        self.crossings.forbid(forbidden_forms(secret))
        self.secret, self.key_version = secret, version
        self.record_key = (
            derive_record_key(secret, context=self.project.name, partner=self.partner)
            if self.project.linkage.stable_entity_ids
            else None
        )

    @property
    def key_check(self) -> str:
        """The key-check value of the secret this node holds, as its Hello carries it."""
        return key_check(self.secret, fingerprint=self.fingerprint, version=self.key_version)

    @property
    def partner(self) -> str:
        return self.config.partner

    @property
    def project(self) -> Project:
        return self.loaded.project

    @property
    def fingerprint(self) -> str:
        return self.loaded.fingerprint

    @property
    def workdir(self) -> Path:
        return self.config.workdir

    def round_files(self, round_id: str) -> RoundFiles:
        return RoundFiles(self.workdir, round_id)

    @cached_property
    def releases(self) -> Releases:
        """Disclosure control of the tables this node computes (``local`` products), across
        rounds: its own rounding key and release ledger in ``<workdir>/disclosure``, every
        table's decisions counted in its audit log."""
        from oda_fed.products.releases import PENDING, Releases

        def audit(round_id: str, table: str, decisions: dict[str, int]) -> None:
            self.crossings.record(
                sender=self.partner,
                recipient=self.partner,
                kind=AuditKind.DISCLOSURE_CHECKED,
                round_id=round_id,
                detail={"product": table, **decisions},
            )

        name = self.fingerprint.rpartition(":")[2][:16]
        folder = self.workdir / "disclosure"
        private_dir(folder / PENDING)  # and its parent: the rounding key, the ledger's true counts
        return Releases.in_folder(folder, self.project, name=name, audit=audit)
