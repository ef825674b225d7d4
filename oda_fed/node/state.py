"""What a node's parts work over: its config, the pinned project, its secret and its audit log.

Made once by :class:`oda_fed.node.agent.NodeAgent` when the node starts, after every check that
can fail before dialling out (the project's fingerprint, the certificate, the secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from oda_fed.config import LoadedProject, NodeConfig, Project
from oda_fed.node.rounds import RoundFiles
from oda_fed.node.sources import Layout
from oda_fed.transport.crossing import Crossings
from oda_fed.transport.protocol import AuditKind

if TYPE_CHECKING:
    from oda_fed.products.releases import Releases


@dataclass
class NodeState:
    config: NodeConfig
    loaded: LoadedProject
    secret: bytes
    # Derived only when the signed project asks for record keys (stable_entity_ids).
    record_key: bytes | None
    layout: Layout
    crossings: Crossings
    rounds_closed: int = 0

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
        from oda_fed.products.releases import Releases

        def audit(round_id: str, table: str, decisions: dict[str, int]) -> None:
            self.crossings.record(
                sender=self.partner,
                recipient=self.partner,
                kind=AuditKind.DISCLOSURE_CHECKED,
                round_id=round_id,
                detail={"product": table, **decisions},
            )

        name = self.fingerprint.rpartition(":")[2][:16]
        return Releases.in_folder(self.workdir / "disclosure", self.project, name=name, audit=audit)
