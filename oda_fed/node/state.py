"""What a node's parts work over: its config, the pinned project, its secret and its audit log.

Made once by :class:`oda_fed.node.agent.NodeAgent` when the node starts, after every check that
can fail before dialling out (the project's fingerprint, the certificate, the secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oda_fed.config import LoadedProject, NodeConfig, Project
from oda_fed.node.rounds import RoundFiles
from oda_fed.node.sources import Layout
from oda_fed.transport.crossing import Crossings


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
