"""Uploads from a hostile partner against a live coordinator over mutual TLS: upload streams
opened and left idle, chunks that overlap, and attribute names no project can declare. Each
attack succeeded against the coordinator before this test; now it fails, and honest partners'
uploads go through."""

from __future__ import annotations

import queue
import time

import grpc
import pytest

from oda_fed.config import load_project
from oda_fed.coordinator.store import Store
from oda_fed.encoding.evidence import linkage_layout
from oda_fed.proto.v1 import coordinator_pb2 as wire
from oda_fed.transport.protocol import CALLS_PER_CALLER, UPLOADS_AT_ONCE

pytestmark = pytest.mark.grpc


def _chunk(federation, round_id: str, **fields) -> wire.ClkChunk:
    """A CLK chunk of the project's width with the field evidence it agreed, all zeros;
    ``fields`` override the one-record default."""
    linkage = load_project(federation.workdir / "project.toml").project.linkage
    bits = linkage.wire_bits
    base = dict(round_id=round_id, project_fingerprint=federation.fingerprint, chunk_index=0,
                total_chunks=1, first_ref=0, records=1, total_records=1, clk_bits=bits)  # fmt: skip
    base.update(fields)
    evidence = [wire.EvidenceColumn(name=name, data=b"\0" * width * base["records"])
                for name, width in linkage_layout(linkage)]  # fmt: skip
    return wire.ClkChunk(clks=b"\0" * (bits // 8) * base["records"], evidence=evidence, **base)


def _held(federation, partner: str) -> int:
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    try:
        found = store.uploads.state(round_id=store.rounds.get(None).round_id, partner=partner)
        return 0 if found is None else found.records_stored
    finally:
        store.close()


def test_upload_streams_left_idle_hold_up_no_other_partner_s_upload(federation) -> None:
    # Attack: a partner opens as many uploads as the coordinator takes at once and sends
    # nothing. When a slot was held for a whole upload, every other partner's upload waited
    # for a slot until it was refused, and so again on every retry.
    assert UPLOADS_AT_ONCE <= CALLS_PER_CALLER - 1  # the attacker may open that many
    round_id = federation.start_round()
    # Each partner holds its live session, as its node would.
    with federation.session("council") as stub, federation.session("police") as police_stub:
        idle: queue.Queue = queue.Queue()  # a request stream that sends nothing until ended
        held = [stub.UploadClks.future(iter(idle.get, None)) for _ in range(UPLOADS_AT_ONCE)]
        time.sleep(0.5)  # every one of them under way at the coordinator
        receipt = police_stub.UploadClks(iter([_chunk(federation, round_id)]), timeout=20)
        assert receipt.complete and receipt.records_stored == 1
        for call in held:
            call.cancel()


def test_overlapping_chunks_never_store_more_records_than_the_upload_declares(federation) -> None:
    # Attack: chunks that each cover the whole upload, under different indices. Each passed the
    # per-chunk checks and was stored; the overlap only stopped the upload from completing, so
    # total_chunks x total_records records (far beyond max_records) could be stored.
    round_id = federation.start_round()
    total = 3
    overlapping = [
        _chunk(
            federation,
            round_id,
            chunk_index=i,
            total_chunks=total,
            records=total,
            total_records=total,
        )  # fmt: skip
        for i in range(total)
    ]
    with federation.session("council") as stub, pytest.raises(grpc.RpcError) as info:
        stub.UploadClks(iter(overlapping), timeout=20)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"more than the {total} it declared" in info.value.details()
    assert _held(federation, "council") <= total


def test_an_attribute_name_no_project_can_declare_is_refused_not_an_error(federation) -> None:
    # Found by fuzzing: a name outside the project's pattern raised past the handler (UNKNOWN).
    round_id = federation.start_round()
    chunk = wire.AttributeChunk(
        round_id=round_id, project_fingerprint=federation.fingerprint,
        product_id="known_to_services_by_ward", attribute="Ward; DROP", chunk_index=0,
        total_chunks=1, first_ref=0, total_records=1, values=["E05000001"],
    )  # fmt: skip
    with federation.session("council") as stub, pytest.raises(grpc.RpcError) as info:
        stub.UploadAttribute(iter([chunk]), timeout=20)
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "does not let 'council' share attribute" in info.value.details()
