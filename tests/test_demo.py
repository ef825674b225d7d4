"""`oda-fed demo` end to end: real processes, real mutual TLS, real SQLite, real audit logs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.grpc]


def test_demo_runs_the_whole_federation(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "oda_fed", "demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    match = re.search(r"precision (\d\.\d+), recall (\d\.\d+)", out)
    assert match, out
    precision, recall = map(float, match.groups())
    assert precision >= 0.95 and recall >= 0.95, out
    assert "audit logs verified" in out
    assert "suppressed" in out

    # Four separate parties wrote four audit logs; the report and product exist.
    logs = sorted(p.name for p in workdir.rglob("*.jsonl"))
    assert logs == ["coordinator.jsonl", "council.jsonl", "police.jsonl", "social_care.jsonl"]
    assert list(workdir.glob("coordinator/products/*/report.html"))
    assert list(workdir.glob("coordinator/products/*/known_to_services_by_ward.png"))
    # The map, drawn on the ward boundaries the coordinator holds, went to the council.
    assert (workdir / "coordinator" / "wards.geojson").exists() and "map: " in out
    assert list(workdir.glob("nodes/council/state/releases/*/*/known_to_several_services_map.png"))
    # The demo releases its round at once: its dashboard is published and listed.
    [dashboard] = workdir.glob("coordinator/products/*/dashboard.html")
    index = workdir / "coordinator" / "products" / "index.html"
    assert f"./{dashboard.parent.name}/dashboard.html" in index.read_text()
    assert "index.html" in out
    for partner in ("council", "police", "social_care"):
        assert (workdir / "nodes" / partner / "state" / "entities.csv").exists()
        assert (workdir / "logs" / f"{partner}.log").read_text()

    # A second run reuses the folder it wrote; a folder it did not write is refused.
    other = tmp_path / "precious"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    refused = subprocess.run(
        [sys.executable, "-m", "oda_fed", "demo", "--workdir", str(other)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "not an earlier demo folder" in refused.stderr
    assert (other / "keep.txt").read_text() == "x"
