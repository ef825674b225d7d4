"""The committed generated code must be exactly what protos/ produces with the pinned generator."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_code_matches_protos(tmp_path: Path) -> None:
    produced = _generator().generate(tmp_path)
    assert produced, "the generator produced nothing"
    committed_dir = ROOT / "oda_fed" / "proto" / "v1"
    for path in produced:
        committed = committed_dir / path.name
        assert committed.exists(), f"{path.name} is generated but not committed; run `make proto`"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{path.name} differs from what protos/ generates; run `make proto` and commit"
        )
    stale = {p.name for p in committed_dir.glob("*_pb2*")} - {p.name for p in produced}
    assert not stale, f"committed files no proto produces: {sorted(stale)}"


def test_only_serde_and_servicers_import_generated_code() -> None:
    allowed = {
        "coordinator/service.py",
        "coordinator/server.py",
        "coordinator/admin.py",
        "node/agent.py",
        "transport/crossing.py",
    }
    offenders = []
    for path in (ROOT / "oda_fed").rglob("*.py"):
        rel = path.relative_to(ROOT / "oda_fed").as_posix()
        if rel.startswith("proto/"):
            continue
        if "_pb2" in path.read_text() and rel not in allowed:
            offenders.append(rel)
    assert not offenders, f"modules importing generated protobuf code: {offenders}"
