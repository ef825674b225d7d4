"""A coordinator with ``dask_scheduler`` set matches its rounds on that Dask cluster, over the same
mutual TLS to the nodes, and links the same entities as one matching in its own process."""

from __future__ import annotations

import logging
import time
import tomllib

import pytest
import tomli_w

from oda_fed.transport.protocol import RoundState


def _entities(federation) -> set[frozenset[tuple[str, str]]]:
    """The round's entities as sets of (partner, record id): entity ids are fresh each round."""
    members: dict[str, set[tuple[str, str]]] = {}
    for partner in federation.partners:
        for record, entity in federation.entity_ids(partner).items():
            members.setdefault(entity, set()).add((partner, record))
    return {frozenset(m) for m in members.values()}


@pytest.mark.grpc
@pytest.mark.slow
def test_a_round_matched_on_a_dask_cluster_links_the_same_entities(
    federation, dask_address: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert federation.run_round().state is RoundState.CLOSED
    in_process = _entities(federation)
    federation.stop_coordinator()
    doc = tomllib.loads(federation.coordinator_config.read_text())
    doc["dask_scheduler"] = dask_address
    federation.coordinator_config.write_text(tomli_w.dumps(doc))
    federation.start_coordinator(same_port=True)
    with caplog.at_level(logging.INFO, logger="oda_fed.coordinator.linking"):
        status = federation.run_round()
    assert status.state is RoundState.CLOSED, status.message
    assert any("on the Dask cluster" in r.getMessage() for r in caplog.records)
    assert _entities(federation) == in_process
    shared = federation.workdir / "coordinator" / "state" / "dask"
    assert shared.is_dir() and list(shared.iterdir()) == []  # the CLKs went with the round


@pytest.mark.grpc
def test_an_unreachable_scheduler_leaves_the_round_unmatched(
    federation, caplog: pytest.LogCaptureFixture
) -> None:
    federation.stop_coordinator()
    doc = tomllib.loads(federation.coordinator_config.read_text())
    doc["dask_scheduler"] = "tcp://127.0.0.1:9"  # nothing listens there
    federation.coordinator_config.write_text(tomli_w.dumps(doc))
    federation.start_coordinator(same_port=True)
    caplog.set_level(logging.ERROR, logger="oda_fed.coordinator.linking")
    for partner in federation.partners:
        federation.run_node(partner)
    admin = federation.admin()
    try:
        round_id = admin.start_round().round_id
        deadline = time.monotonic() + 90
        while not any("stays unmatched" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the round was never matched"
            time.sleep(0.2)
        status = admin.get_round(round_id)
        admin.cancel_round(round_id, reason="test over")  # so the nodes stop waiting
    finally:
        admin.close()
    assert status.state is RoundState.MATCHING  # not failed: it can be matched again
    message = next(r.getMessage() for r in caplog.records if "stays unmatched" in r.getMessage())
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in message
