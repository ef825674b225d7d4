"""A node checks what the coordinator holds in its name before it says its upload is done."""

from __future__ import annotations

import numpy as np
import pytest

from oda_fed.config import load_project
from oda_fed.coordinator.store import Store
from oda_fed.errors import ProtocolError
from oda_fed.node.client import clk_chunks
from oda_fed.transport import serde


def test_garbage_uploaded_in_a_partners_name_stops_its_node_loudly(federation) -> None:
    """Another certificate for the council uploads garbage first. The council's node must not
    take the coordinator's "complete" at its word and exit 0: it compares the digest of what the
    coordinator holds with its own, and fails, naming what happened."""
    round_id = federation.start_round()
    project = load_project(federation.workdir / "project.toml").project
    rng = np.random.default_rng(4)
    n = 50
    clks = rng.integers(0, 2**63, size=(n, project.linkage.wire_bits // 64), dtype=np.uint64)
    tokens = {f.name: [rng.bytes(32) for _ in range(n)]
              for f in project.linkage.fields if f.keyed_token}  # fmt: skip
    garbage = clk_chunks(round_id=round_id, fingerprint=federation.fingerprint, clks=clks,
                         tokens=tokens, keys=None, chunk_records=10_000)  # fmt: skip
    channel, stub = federation.node_stub("council")
    assert stub.UploadClks(serde.to_proto(c) for c in garbage).complete
    channel.close()

    agent = federation.agent("council")
    with pytest.raises(ProtocolError, match="something else uploaded in this partner's name"):
        agent.run(rounds=1, give_up_after=20)
    agent.close()
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    try:
        held = store.uploads.state(round_id=round_id, partner="council")
        assert held is not None and held.records_stored == n  # the garbage, not mixed with more
    finally:
        store.close()
