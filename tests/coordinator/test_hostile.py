"""A hostile partner (or any holder of a partnership certificate) against a live coordinator over
mutual TLS: holding streams open, flooding it with bad calls, oversized values and uploads, and
forged answers. Each attack measured against the earlier coordinator is played here and must
fail, while honest callers are served."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oda_fed.audit import read_entries
from oda_fed.config import TlsFiles, load_project
from oda_fed.coordinator.store import Store
from oda_fed.pki import issue, read_secret
from oda_fed.pki.secret import key_check
from oda_fed.proto.v1 import coordinator_pb2
from oda_fed.transport.channel import create_channel
from oda_fed.transport.protocol import CALLS_PER_CALLER, RoundState


def _watch_streams(channel: grpc.Channel, n: int) -> tuple[list, list[grpc.RpcError]]:
    """Open ``n`` health-watch streams and hold them; the ones refused at once, separately."""
    stub = health_pb2_grpc.HealthStub(channel)
    held, refused = [], []
    for _ in range(n):
        call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        try:
            next(call)  # the first status: the stream is open, holding a server thread
            held.append(call)
        except grpc.RpcError as exc:
            refused.append(exc)
    return held, refused


def test_streams_held_open_by_one_partner_or_a_stranger_starve_no_one(
    federation, tmp_path: Path
) -> None:
    channel, _ = federation.node_stub("council")
    held, refused = _watch_streams(channel, 24)
    assert len(held) == CALLS_PER_CALLER and len(refused) == 24 - CALLS_PER_CALLER
    assert all(e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)
    # A certificate of the partnership CA that names no partner may not watch at all.
    cert, key = issue(ca_dir=federation.workdir / "ca", name="fire", role="node", out_dir=tmp_path)
    tls = TlsFiles(ca=federation.workdir / "ca" / "ca.crt", cert=cert, key=key)
    stranger = create_channel(address=f"127.0.0.1:{federation.port}", tls=tls,
                              server_name="localhost")  # fmt: skip
    strange_held, strange_refused = _watch_streams(stranger, 10)
    assert not strange_held and len(strange_refused) == 10
    assert all(e.code() is grpc.StatusCode.PERMISSION_DENIED for e in strange_refused)

    # Everyone else is served at once: the operator starts a round, police asks for its status.
    started = time.monotonic()
    round_id = federation.start_round()
    with federation.session("police") as police:
        receipt = police.GetUploadStatus(coordinator_pb2.UploadStatusRequest(
            round_id=round_id, project_fingerprint=federation.fingerprint), timeout=5)  # fmt: skip
    assert not receipt.complete and time.monotonic() - started < 5
    for call in [*held, *strange_held]:
        call.cancel()
    for c in (channel, stranger):
        c.close()
    # Places are given back when streams end: council may open its few again.
    time.sleep(0.5)
    again, _ = _watch_streams(federation.node_stub("council")[0], CALLS_PER_CALLER)
    assert len(again) == CALLS_PER_CALLER
    for call in again:
        call.cancel()


def test_thousands_of_bad_calls_are_counted_in_a_handful_of_entries(federation) -> None:
    channel, _ = federation.node_stub("police")
    nope = channel.unary_unary("/oda_fed.proto.v1.Coordinator/NoSuchMethod")
    started = time.monotonic()
    for _ in range(3000):
        with pytest.raises(grpc.RpcError) as info:
            nope(b"", timeout=5)
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    channel.close()
    elapsed = time.monotonic() - started
    federation.stop_coordinator()  # writes the counts still open
    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    refused = [e for e in read_entries(log) if e.kind == "refused:call"]
    # Every refusal is counted, in one entry per caller and interval, not one fsync each: a
    # first refusal is one entry, and a count entry says how many followed it.
    assert sum(e.detail.get("repeats", 1) for e in refused) == 3000
    assert len(refused) <= 2 * (elapsed / 5 + 2)
    assert all("NoSuchMethod" in e.detail["method"] for e in refused)


@contextlib.contextmanager
def _stub_round(federation):
    """A round started, and a raw stub holding the council's live session, as its node would."""
    round_id = federation.start_round()
    with federation.session("council") as stub:
        yield round_id, stub


def test_an_upload_beyond_the_partners_quota_is_refused_before_it_is_stored(federation) -> None:
    words = load_project(federation.workdir / "project.toml").project.linkage.wire_bits // 64
    with _stub_round(federation) as (round_id, stub), pytest.raises(grpc.RpcError) as info:
        chunk = coordinator_pb2.ClkChunk(
            round_id=round_id, project_fingerprint=federation.fingerprint, chunk_index=0,
            total_chunks=1, first_ref=0, records=1, total_records=50_000_000,
            clk_bits=words * 64, clks=b"\0" * words * 8,
        )  # fmt: skip
        stub.UploadClks(iter([chunk]))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 10000000 (max_records)" in info.value.details()
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    assert store.uploads.state(round_id=round_id, partner="council") is None
    store.close()


def test_a_two_mebibyte_label_is_refused_at_once(federation) -> None:
    project = load_project(federation.workdir / "project.toml").project
    product = next(p for p in project.products if any(
        ref.partner == "council" for ref in p.attributes()) and p.kind != "local")  # fmt: skip
    attribute = next(ref.name for ref in product.attributes() if ref.partner == "council")
    with _stub_round(federation) as (round_id, stub), pytest.raises(grpc.RpcError) as info:
        chunk = coordinator_pb2.AttributeChunk(
            round_id=round_id, project_fingerprint=federation.fingerprint, product_id=product.id,
            attribute=attribute, chunk_index=0, total_chunks=1, first_ref=0, total_records=1,
            values=["W" * (2 << 20)],
        )  # fmt: skip
        started = time.monotonic()
        stub.UploadAttribute(iter([chunk]))
    assert time.monotonic() - started < 5
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "values[0] is 2097152 characters long; at most 100 are accepted" in info.value.details()


def _answer(federation, instruction_id: str, error: str) -> None:
    """What a hostile council sends: a Hello, then an answer it makes up."""
    channel, stub = federation.node_stub("council")
    secret = read_secret(federation.workdir / "nodes" / "council" / "linkage.secret")
    check = key_check(secret, fingerprint=federation.fingerprint, version=0)
    events = [
        coordinator_pb2.NodeEvent(hello=coordinator_pb2.Hello(
            partner_id="council", project_fingerprint=federation.fingerprint,
            key_version=0, key_check=check)),
        coordinator_pb2.NodeEvent(result=coordinator_pb2.InstructionResult(
            instruction_id=instruction_id, ok=False, error=error)),
    ]  # fmt: skip
    stream = stub.Connect(iter(events), timeout=5)
    with contextlib.suppress(grpc.RpcError):  # the stream ends when its events do, or times out
        for _ in stream:
            pass
    channel.close()


def test_a_forged_answer_cannot_rewrite_a_closed_round_or_the_operators_terminal(
    federation,
) -> None:
    status = federation.run_round()
    assert status.state is RoundState.CLOSED
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    delivery = next(d for d in store.deliveries.of_round(status.round_id)
                    if d.partner == "council" and d.kind == "encode_and_upload")  # fmt: skip
    store.close()
    _answer(federation, delivery.instruction_id, "\x1b[2J\x1b[31mround rewritten")
    admin = federation.admin()
    after = admin.get_round(status.round_id)
    assert after.state is RoundState.CLOSED and after.message == status.message

    # In a round still open, the same escape codes reach the status only as visible text.
    round_id = federation.start_round()
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    delivery = next(d for d in store.deliveries.of_round(round_id)
                    if d.partner == "council" and d.kind == "encode_and_upload")  # fmt: skip
    store.close()
    _answer(federation, delivery.instruction_id, "\x1b[2Jcleared your screen")
    message = admin.get_round(round_id).message
    admin.close()
    assert "\x1b" not in message and "\\u001b[2Jcleared your screen" in message
