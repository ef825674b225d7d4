"""Node fixtures: a node.toml's settings for a project held in memory, without certificates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from oda_fed.config import LoadedProject, NodeConfig, Project, fingerprint_bytes


def node_config(
    tmp_path: Path, project: Project, *, partner: str, source: dict
) -> tuple[NodeConfig, LoadedProject]:
    """``partner``'s node config (its ``[source]`` as given) and the project it pins; its
    certificates, secret and coordinator are names only, for code that reads none of them."""
    loaded = LoadedProject(
        path=tmp_path / "project.toml", fingerprint=fingerprint_bytes(b"test"), project=project
    )
    config = NodeConfig.model_validate(
        {
            "partner": partner,
            "project": tmp_path / "project.toml",
            "project_fingerprint": loaded.fingerprint,
            "secret_file": tmp_path / "secret",
            "workdir": tmp_path / "state",
            "coordinator": {"address": "127.0.0.1:1"},
            "tls": {"ca": "ca", "cert": "cert", "key": "key"},
            "source": source,
        }
    )
    return config, loaded


@pytest.fixture(name="node_config", scope="session")
def _node_config() -> Callable[..., tuple[NodeConfig, LoadedProject]]:
    return node_config
