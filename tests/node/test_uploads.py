"""The measured attack: a second valid certificate for the council (signed with the partnership
CA's key) uploads garbage first. Without the council's live session it is refused. Saying hello
before the council's node ever has, it is pinned for the council, and the council's own node is
refused loudly; once the CA revokes it, the council's node is pinned, catches the garbage by its
digest check, the coordinator discards it, and the round runs on the council's own CLKs."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from oda_fed.config import load_project
from oda_fed.coordinator.store import Store
from oda_fed.demo import evaluate
from oda_fed.encoding.evidence import Evidence, linkage_layout
from oda_fed.errors import AuthError, ProtocolError
from oda_fed.node.client import clk_chunks
from oda_fed.pki.register import revoke
from oda_fed.transport import serde
from oda_fed.transport.protocol import RoundState

pytestmark = pytest.mark.grpc


def _garbage(federation, round_id: str, n: int) -> list:
    project = load_project(federation.workdir / "project.toml").project
    rng = np.random.default_rng(4)
    clks = rng.integers(0, 2**63, size=(n, project.linkage.wire_bits // 64), dtype=np.uint64)
    tokens = {f.name: [rng.bytes(32) for _ in range(n)]
              for f in project.linkage.fields if f.keyed_token}  # fmt: skip
    layout = linkage_layout(project.linkage)
    evidence = Evidence.from_rows(layout, [rng.bytes(sum(w for _, w in layout)) for _ in range(n)])
    chunks = clk_chunks(round_id=round_id, fingerprint=federation.fingerprint, clks=clks,
                        tokens=tokens, keys=None, chunk_records=10_000, evidence=evidence,
                        layout=layout)  # fmt: skip
    return [serde.to_proto(c) for c in chunks]


def _held(federation, round_id: str):
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    try:
        return store.uploads.state(round_id=round_id, partner="council")
    finally:
        store.close()


def _wait_disconnected(federation, round_id: str, partner: str) -> None:
    admin = federation.admin()
    try:
        deadline = time.monotonic() + 20
        while any(p.connected for p in admin.get_round(round_id).partners if p.partner == partner):
            assert time.monotonic() < deadline, f"{partner}'s session did not end"
            time.sleep(0.05)
    finally:
        admin.close()


def test_a_second_council_certificate_cannot_pass_garbage_off_as_the_councils(
    federation, tmp_path: Path, second_certificate
) -> None:
    ca = federation.workdir / "ca"
    rogue_cert, rogue_key = second_certificate(ca, "council", tmp_path)
    round_id = federation.start_round()
    garbage = _garbage(federation, round_id, 50)

    # No session: refused, nothing kept.
    channel, stub = federation.node_stub("council")
    with pytest.raises(grpc.RpcError) as info:
        stub.UploadClks(iter(garbage))
    channel.close()
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no live session" in info.value.details()
    assert _held(federation, round_id) is None

    # Saying hello before the council's node ever has, it is pinned for the council, holds
    # its session and its garbage is taken...
    with federation.session("council", cert=rogue_cert, key=rogue_key) as stub:
        assert stub.UploadClks(iter(garbage)).complete
    _wait_disconnected(federation, round_id, "council")

    # ...so the council's own node is refused, loudly, and the round is not linked meanwhile.
    agent = federation.agent("council")
    with pytest.raises(AuthError, match="pinned to another certificate"):
        agent.run(rounds=1, give_up_after=20)
    agent.close()
    assert _held(federation, round_id) is not None

    # Told so, the CA revokes the second certificate and the council's node is pinned instead.
    # It does not take "complete" at its word: it fails loudly, and the coordinator discards
    # what it held in the council's name instead of linking it.
    revoke(ca, str(rogue_cert), reason="key-compromise")
    agent = federation.agent("council")
    with pytest.raises(ProtocolError, match="something else uploaded in this partner's name"):
        agent.run(rounds=1, give_up_after=20)
    agent.close()
    assert _held(federation, round_id) is None
    admin = federation.admin()
    try:
        status = admin.get_round(round_id)
    finally:
        admin.close()
    assert status.state in (RoundState.OPEN, RoundState.UPLOADING), status.message
    assert "discarded" in status.message

    # The round then runs on the council's own CLKs, as if the garbage had never come.
    threads = [federation.run_node(p) for p in federation.partners]
    admin = federation.admin()
    try:
        status = admin.wait(round_id, timeout=120)
    finally:
        admin.close()
    for thread, errors in threads:
        thread.join(timeout=60)
        assert not errors, errors
    assert status.state is RoundState.CLOSED, status.message
    quality = evaluate(federation.workdir, federation.synthetic, round_id=round_id)
    assert quality.precision > 0.95 and quality.recall > 0.8
