"""The deployment kits and docs, followed literally, work: the names agree with each other and
with the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from oda_fed.config import load_project
from oda_fed.encoding import default_field_encoding
from oda_fed.standardise.fieldtypes import CANONICAL_FIELD_TYPES

ROOT = Path(__file__).resolve().parents[2]


def test_the_coordinator_certificate_name_is_the_one_the_examples_use() -> None:
    runbook = (ROOT / "coordinator" / "RUNBOOK.md").read_text()
    hosts = set(re.findall(r"pki request coordinator --role coordinator --host (\S+)", runbook))
    assert len(hosts) == 1, hosts
    (host,) = hosts
    coordinator = tomllib.loads((ROOT / "coordinator" / "coordinator.example.toml").read_text())
    assert coordinator["server_name"] == host  # else "Hostname Verification Check failed"
    node = tomllib.loads((ROOT / "node" / "node.example.toml").read_text())["coordinator"]
    assert node.get("server_name", node["address"].rsplit(":", 1)[0]) == host


def test_the_example_project_and_the_docs_use_the_current_field_type_names() -> None:
    project = load_project(ROOT / "coordinator" / "project.example.toml").project
    assert {f.type for f in project.linkage.fields} <= set(CANONICAL_FIELD_TYPES)
    doc = (ROOT / "docs" / "project-file.md").read_text()
    defaults = re.search(r"Default bits per token by type: (.*?)\. A record", doc, re.S)
    assert defaults is not None
    listed = dict(re.findall(r"`(\w+)` (\d+)", defaults.group(1)))
    assert listed == {
        t: str(default_field_encoding("f", t).bits_per_token) for t in CANONICAL_FIELD_TYPES
    }
