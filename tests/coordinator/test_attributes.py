"""Attributes leave a node only as the signed project declares them: the attack of a ward mapped
to the surname column, at an honest node and at one that skips its own checks, over real mTLS."""

from __future__ import annotations

import time
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


def test_an_attribute_uploaded_in_a_partners_name_is_never_analysed(
    federation, monkeypatch
) -> None:
    """Something holding the council's session uploads a forged ward column first (a shuffled
    copy: every value in the domain, so the coordinator's checks cannot tell). Products wait
    for the council's node to say its upload is done; it finds the coordinator holds other
    values than it sent and says so instead, and the forgery is discarded, never analysed."""
    from oda_fed.node.client import CoordinatorClient
    from oda_fed.proto.v1 import coordinator_pb2
    from oda_fed.transport import serde
    from oda_fed.transport.messages import AttributeChunk
    from oda_fed.transport.protocol import CHUNK_RECORDS, RoundState, chunk_count, chunks

    honest = CoordinatorClient.upload_attribute
    seen: list[RoundState] = []

    def forge_first(self, round_id: str, *, product_id: str, attribute: str, values) -> None:
        n, forged = len(values), list(reversed(values))
        sent = [
            serde.to_proto(AttributeChunk(
                round_id=round_id, project_fingerprint=federation.fingerprint,
                product_id=product_id, attribute=attribute, chunk_index=index,
                total_chunks=chunk_count(n, CHUNK_RECORDS), first_ref=start, total_records=n,
                values=tuple(forged[start:stop])))
            for index, start, stop in chunks(n, CHUNK_RECORDS)
        ]  # fmt: skip
        receipt = self._stub.UploadAttribute(iter(sent))
        assert isinstance(receipt, coordinator_pb2.UploadReceipt) and receipt.complete
        admin = federation.admin()
        try:  # the forgery is complete: were it taken, the products would be made now
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                seen.append(admin.get_round(round_id).state)
                time.sleep(0.1)
        finally:
            admin.close()
        honest(self, round_id, product_id=product_id, attribute=attribute, values=values)

    monkeypatch.setattr(CoordinatorClient, "upload_attribute", forge_first)
    round_id = federation.start_round()
    others = [federation.run_node(p) for p in federation.partners[1:]]
    agent = federation.agent("council")
    with pytest.raises(ProtocolError, match="something else uploaded in this partner's name"):
        agent.run(rounds=1, give_up_after=30)
    agent.close()
    assert seen and set(seen) == {RoundState.ANALYSING}, seen
    admin = federation.admin()
    try:
        status = admin.get_round(round_id)
    finally:
        admin.close()
    assert status.state is RoundState.ANALYSING, status.message
    assert "council could not do 'share_attribute'" in status.message
    assert "discarded" in status.message
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    assert store.uploads.state(round_id=round_id, partner="council", upload=WARD) is None
    store.close()
    assert not list((federation.workdir / "coordinator").rglob(f"*{round_id}*/*.csv"))
    finish(federation, round_id, others)
