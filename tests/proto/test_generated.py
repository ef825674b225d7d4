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


def test_only_serde_builds_messages_and_only_servicers_and_clients_use_stubs() -> None:
    """Generated messages (``*_pb2``) are built and read in ``transport/serde.py`` alone; the
    service stubs and base classes (``*_pb2_grpc``) only where a call is served or made."""
    import re

    uses_stubs = {
        "coordinator/servicer.py",
        "coordinator/server.py",
        "coordinator/admin.py",
        "node/agent.py",
        "node/client.py",
        "node/session.py",
    }
    ours = "|".join(p.stem for p in (ROOT / "oda_fed" / "proto" / "v1").glob("*_pb2.py"))
    messages = re.compile(rf"\b({ours})\b")
    stubs = re.compile(rf"\b({ours})_grpc\b")
    offenders = []
    for path in (ROOT / "oda_fed").rglob("*.py"):
        rel = path.relative_to(ROOT / "oda_fed").as_posix()
        if rel.startswith("proto/"):
            continue
        text = path.read_text()
        if messages.search(text) and rel != "transport/serde.py":
            offenders.append(f"{rel} uses generated messages")
        if stubs.search(text) and rel not in uses_stubs:
            offenders.append(f"{rel} uses generated stubs")
    assert not offenders, offenders
