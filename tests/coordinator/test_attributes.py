"""Attributes leave a node only as the signed project declares them: the attack of a ward mapped
to the surname column, at an honest node and at one that skips its own checks, over real mTLS."""

from __future__ import annotations

import tomllib

import pytest
import tomli_w

from oda_fed.audit import read_entries
from oda_fed.coordinator.store import Store
from oda_fed.errors import InputDataError, ProtocolError
from oda_fed.node import derive
from oda_fed.transport.messages import Upload
from oda_fed.transport.protocol import AuditKind

pytestmark = pytest.mark.grpc

WARD = Upload(product_id="known_to_services_by_ward", attribute="ward")


def map_ward_to_surnames(fed) -> list[str]:
    """Point the council's ward at its surname column, as a mistaken node.toml would; return
    surnames long enough to search the coordinator's files for."""
    profile = fed.synthetic.profiles[0]
    column = profile.columns["last_name"]
    path = fed.node_config(profile.id)
    doc = tomllib.loads(path.read_text())
    doc["source"]["attributes"]["ward"] = column
    path.write_text(tomli_w.dumps(doc))
    names = fed.synthetic.partners[profile.id][column]
    return sorted({n for n in names if len(n) >= 7})[:40]


def coordinator_bytes(fed) -> bytes:
    return b"".join(p.read_bytes() for p in (fed.workdir / "coordinator").rglob("*") if p.is_file())


def finish(fed, round_id: str, threads) -> None:
    admin = fed.admin()
    admin.cancel_round(round_id, reason="test over")
    admin.close()
    for thread, errors in threads:
        thread.join(timeout=60)
        assert not errors, errors


def test_an_honest_node_refuses_to_send_a_mis_mapped_column(federation) -> None:
    surnames = map_ward_to_surnames(federation)
    round_id = federation.start_round()
    others = [federation.run_node(p) for p in federation.partners[1:]]
    agent = federation.agent("council")
    with pytest.raises(InputDataError, match="attribute 'ward': .* outside the domain"):
        agent.run(rounds=1, give_up_after=10)
    agent.close()
    admin = federation.admin()
    status = admin.get_round(round_id)
    admin.close()
    assert "council could not do 'encode_and_upload': InputDataError" in status.message
    # Nothing left the council: not even its CLKs, and no round was prepared.
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    assert store.uploads.state(round_id=round_id, partner="council") is None
    store.close()
    assert not (federation.workdir / "nodes" / "council" / "state" / "rounds" / round_id).exists()
    finish(federation, round_id, others)
    blob = coordinator_bytes(federation)
    assert not [n for n in surnames if n.encode() in blob]


def test_the_coordinator_refuses_a_mis_mapped_column_from_a_node_that_skips_its_checks(
    federation, monkeypatch
) -> None:
    surnames = map_ward_to_surnames(federation)
    # The hostile (or broken) node derives nothing and checks nothing: what it sends is the column.
    monkeypatch.setattr(derive, "derive", lambda attribute, raw, **_: [v.strip() for v in raw])
    round_id = federation.start_round()
    others = [federation.run_node(p) for p in federation.partners[1:]]
    agent = federation.agent("council")
    with pytest.raises(ProtocolError, match="attribute 'ward': .* outside the domain"):
        agent.run(rounds=1, give_up_after=20)
    agent.close()
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    assert store.uploads.state(round_id=round_id, partner="council").complete  # its CLKs
    assert store.uploads.state(round_id=round_id, partner="council", upload=WARD) is None
    store.close()
    finish(federation, round_id, others)

    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    [refused] = [e for e in read_entries(log) if e.kind == AuditKind.REFUSED_ATTRIBUTE_UPLOAD]
    assert refused.sender == "council" and "outside the domain" in refused.detail["reason"]
    assert not [e for e in read_entries(log) if e.kind == AuditKind.ATTRIBUTE_CHUNK]
    blob = coordinator_bytes(federation)
    assert not [n for n in surnames if n.encode() in blob]
