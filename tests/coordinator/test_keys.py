"""The linkage secret agreed among the nodes through the coordinator, which never learns it; the
key check at hello; rotation. Real coordinator, real nodes, real mutual TLS, real SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from oda_fed.audit import cross_check, read_entries, verify_dir
from oda_fed.demo import evaluate
from oda_fed.pki import read_secret, secret_fingerprints
from oda_fed.transport.protocol import AuditKind

pytestmark = pytest.mark.grpc


def agreed(fed, partner: str) -> list[Path]:
    """The agreed secret files a node holds."""
    return sorted((fed.workdir / "nodes" / partner / "state" / "keys").glob("linkage-*.secret"))


def kinds(log: Path) -> list[str]:
    return [e.kind for e in read_entries(log)]


def test_nodes_agree_a_secret_that_the_coordinator_never_holds(agreeing_federation) -> None:
    fed = agreeing_federation
    # Nothing to hand round: no node was given a secret file.
    assert not list((fed.workdir / "nodes").rglob("linkage.secret"))

    status = fed.run_round()
    assert status.state == "closed", status.message
    quality = evaluate(fed.workdir, fed.synthetic, round_id=status.round_id)
    assert quality.precision > 0.95 and quality.recall > 0.8

    files = {p: agreed(fed, p) for p in fed.partners}
    assert all(len(f) == 1 and f[0].name.endswith("-v1.secret") for f in files.values())
    secrets = {read_secret(f[0]) for f in files.values()}
    assert len(secrets) == 1, "every node holds the same secret"
    for (path,) in files.values():
        assert path.stat().st_mode & 0o777 == 0o600
        assert (path.parent / "agreement.key").stat().st_mode & 0o777 == 0o600
    (secret,) = secrets

    # The coordinator relayed it, and holds none of it: not on disk, not in its log.
    needles = secret_fingerprints(secret)
    scanned = 0
    for path in (fed.workdir / "coordinator").rglob("*"):
        if path.is_file():
            scanned += 1
            data = path.read_bytes()
            assert not [n for n in needles if n in data], f"linkage secret found in {path}"
    assert scanned >= 5

    # Every crossing of the agreement is in both sides' logs.
    reports = verify_dir(fed.workdir)
    assert all(r.ok for r in reports) and cross_check(reports) == []
    coordinator = kinds(fed.workdir / "coordinator" / "audit" / "coordinator.jsonl")
    assert coordinator.count(AuditKind.AGREEMENT_KEY) == 3
    assert coordinator.count(AuditKind.WRAPPED_SECRETS) == 1
    assert coordinator.count(AuditKind.WRAPPED_SECRET) == 3
    council = kinds(fed.workdir / "nodes" / "council" / "audit" / "council.jsonl")
    assert council.index(AuditKind.WRAPPED_SECRET) < council.index(AuditKind.HELLO)
