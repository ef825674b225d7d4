"""The metrics endpoints, scraped over real HTTP from a real federation on loopback (mutual TLS):
off unless configured; when on, counters that move by what really happened."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from oda_fed.audit import read_entries
from oda_fed.config import TlsFiles
from oda_fed.pki import init_ca, issue
from oda_fed.proto.v1 import admin_pb2, admin_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc
from oda_fed.transport.channel import create_channel
from oda_fed.transport.protocol import AuditKind

pytestmark = pytest.mark.grpc

COORDINATOR_FAMILIES = {
    "oda_fed_grpc_requests",
    "oda_fed_grpc_request_duration_seconds",
    "oda_fed_upload_chunks",
    "oda_fed_upload_bytes",
    "oda_fed_upload_records",
    "oda_fed_refusals",
    "oda_fed_rounds",
    "oda_fed_nodes_connected",
    "oda_fed_last_linkage_duration_seconds",
    "oda_fed_last_linkage_candidate_pairs",
    "oda_fed_last_linkage_entities",
    "oda_fed_last_linkage_linked_entities",
    "oda_fed_linkages",
    "oda_fed_audit_entries",
}
NODE_FAMILIES = {
    "oda_fed_node_records_encoded",
    "oda_fed_node_upload_chunks",
    "oda_fed_node_upload_bytes",
    "oda_fed_node_last_round_duration_seconds",
    "oda_fed_node_rounds_closed",
    "oda_fed_node_errors",
    "oda_fed_audit_entries",
}


def _listening_ports() -> set[int]:
    """The TCP ports this process listens on (its own sockets, from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        if not Path(table).exists():
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def test_the_endpoint_is_off_by_default(federation) -> None:
    # The coordinator listens for gRPC and nothing else: no metrics port was opened.
    assert _listening_ports() == {federation.port}


def _audit(path: Path, *, kind: AuditKind, sender: str) -> list:
    return [e for e in read_entries(path) if e.kind == kind.value and e.sender == sender]


def test_a_round_moves_the_counters_by_what_crossed(monitored, scrape) -> None:
    fed = monitored.federation
    before = scrape(monitored.port)
    assert before.families >= COORDINATOR_FAMILIES, COORDINATOR_FAMILIES - before.families
    assert before.value("oda_fed_upload_chunks_total") == 0

    status, nodes = monitored.run_round()
    assert status.state == "closed", status.message
    after = scrape(monitored.port)

    log = fed.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    for partner, node in nodes.items():
        assert node.families >= NODE_FAMILIES, NODE_FAMILIES - node.families
        received = _audit(log, kind=AuditKind.CLK_CHUNK, sender=partner)
        node_log = fed.workdir / "nodes" / partner / "audit" / f"{partner}.jsonl"
        sent = _audit(node_log, kind=AuditKind.CLK_CHUNK, sender=partner)
        assert len(received) == len(sent) >= 1
        # The coordinator counted every chunk the node sent, and the same bytes.
        chunks = after.value("oda_fed_upload_chunks_total", partner=partner, upload="clks")
        assert chunks == len(received)
        assert node.value("oda_fed_node_upload_chunks_total", upload="clks") == len(sent)
        assert (
            after.value("oda_fed_upload_bytes_total", partner=partner, upload="clks")
            == (node.value("oda_fed_node_upload_bytes_total", upload="clks"))
            > 0
        )
        records = sum(e.records for e in received)
        assert (
            after.value("oda_fed_upload_records_total", partner=partner, upload="clks") == records
        )
        assert node.value("oda_fed_node_records_encoded_total") == len(fed.extract(partner))
        assert node.value("oda_fed_node_rounds_closed_total") == 1
        assert node.value("oda_fed_node_last_round_duration_seconds") > 0
        assert node.value("oda_fed_audit_entries_total") == len(read_entries(node_log))

    assert after.value("oda_fed_rounds", state="closed") == 1
    assert after.value("oda_fed_rounds") == 1
    assert after.value("oda_fed_grpc_requests_total", method="UploadClks", code="OK") >= 3
    assert after.value("oda_fed_grpc_request_duration_seconds_count", method="UploadClks") >= 3
    assert after.value("oda_fed_linkages_total") == 1
    assert after.value("oda_fed_last_linkage_entities") == status.entities
    assert after.value("oda_fed_last_linkage_linked_entities") == status.linked_entities
    assert after.value("oda_fed_last_linkage_candidate_pairs") >= status.linked_entities
    assert after.value("oda_fed_last_linkage_duration_seconds") > 0
    # Every entry the coordinator wrote to its audit log since it started, and no other.
    assert after.value("oda_fed_audit_entries_total") == len(read_entries(log))
    assert after.value("oda_fed_audit_entries_total", kind="clk_chunk") == sum(
        len(_audit(log, kind=AuditKind.CLK_CHUNK, sender=p)) for p in fed.partners
    )
    assert after.value("oda_fed_refusals_total") == 0


def test_each_refusal_counts_once_under_its_kind(monitored, scrape, tmp_path: Path) -> None:
    fed = monitored.federation
    before = scrape(monitored.port)

    # Issued by the partnership CA, but 'fire' is no partner of the project: refused on hello.
    cert, key = issue(ca_dir=fed.workdir / "ca", name="fire", role="node", out_dir=tmp_path)
    tls = TlsFiles(ca=fed.workdir / "ca" / "ca.crt", cert=cert, key=key)
    channel = create_channel(address=f"127.0.0.1:{fed.port}", tls=tls, server_name="localhost")
    hello = coordinator_pb2.NodeEvent(
        hello=coordinator_pb2.Hello(partner_id="fire", project_fingerprint=fed.fingerprint)
    )
    with pytest.raises(grpc.RpcError) as info:
        list(coordinator_pb2_grpc.CoordinatorStub(channel).Connect(iter([hello]), timeout=10))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A node certificate may not start a round: refused before any handler runs.
    with pytest.raises(grpc.RpcError) as info:
        admin_pb2_grpc.AdminStub(channel).StartRound(admin_pb2.StartRoundRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    channel.close()

    after = scrape(monitored.port)
    hello_refused = {"kind": AuditKind.REFUSED_HELLO.value, "code": "PERMISSION_DENIED"}
    call_refused = {"kind": AuditKind.REFUSED_CALL.value, "code": "PERMISSION_DENIED"}
    assert after.value("oda_fed_refusals_total", **hello_refused) == 1 + before.value(
        "oda_fed_refusals_total", **hello_refused
    )
    assert after.value("oda_fed_refusals_total", **call_refused) == 1 + before.value(
        "oda_fed_refusals_total", **call_refused
    )
    assert after.value("oda_fed_refusals_total") == before.value("oda_fed_refusals_total") + 2
    started = {"service": "Admin", "method": "StartRound", "code": "PERMISSION_DENIED"}
    assert after.value("oda_fed_grpc_requests_total", **started) == 1

    # A certificate from another CA never gets past the TLS handshake, which gRPC does not
    # report to the application: nothing is counted (and nothing is logged).
    rogue = tmp_path / "rogue-ca"
    init_ca(rogue, name="not the partnership")
    cert, key = issue(ca_dir=rogue, name="council", role="node", out_dir=tmp_path / "rogue")
    tls = TlsFiles(ca=fed.workdir / "ca" / "ca.crt", cert=cert, key=key)
    channel = create_channel(address=f"127.0.0.1:{fed.port}", tls=tls, server_name="localhost")
    with pytest.raises(grpc.RpcError) as info:
        list(coordinator_pb2_grpc.CoordinatorStub(channel).Connect(iter([hello]), timeout=10))
    channel.close()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    last = scrape(monitored.port)
    assert last.value("oda_fed_refusals_total") == after.value("oda_fed_refusals_total")
    assert last.value("oda_fed_grpc_requests_total") == after.value("oda_fed_grpc_requests_total")


def test_an_unknown_method_is_counted_without_its_name(monitored, scrape) -> None:
    fed = monitored.federation
    channel, _ = fed.node_stub("council")
    made_up = channel.unary_unary("/oda_fed.proto.v1.Coordinator/C000005-Smith")
    with pytest.raises(grpc.RpcError) as info:
        made_up(b"", timeout=10)
    channel.close()
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    found = scrape(monitored.port)
    assert "C000005" not in found.text
    unknown = {"service": "unknown", "method": "unknown", "code": "UNIMPLEMENTED"}
    assert found.value("oda_fed_grpc_requests_total", **unknown) == 1
    refused = {"kind": AuditKind.REFUSED_CALL.value, "code": "UNIMPLEMENTED"}
    assert found.value("oda_fed_refusals_total", **refused) == 1
