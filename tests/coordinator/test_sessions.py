"""One live session per partner, bound to the certificate it connected with; and certificates the
partnership CA revokes, refused by the coordinator while the other nodes carry on."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from oda_fed.audit import read_entries
from oda_fed.coordinator.sessions import Holder, Sessions, SessionTaken
from oda_fed.errors import AuthError
from oda_fed.pki import load_certificate, read_secret
from oda_fed.pki.register import read_register, revoke, serial_hex
from oda_fed.pki.secret import key_check
from oda_fed.proto.v1 import coordinator_pb2, keys_pb2, keys_pb2_grpc
from oda_fed.transport.protocol import AuditKind, RoundState

HONEST = Holder(fingerprint="sha256:" + "a" * 64, serial="a1")
ROGUE = Holder(fingerprint="sha256:" + "b" * 64, serial="b2")


class _Item:
    instruction_id = "i1"


def test_a_reconnect_with_the_same_certificate_replaces_the_old_stream() -> None:
    """After a network fault the old stream may not be known dead yet: the node's reconnect,
    with its own certificate, takes over, and the old stream is told to end."""
    sessions: Sessions = Sessions()
    old = sessions.open("council", HONEST)
    new = sessions.open("council", HONEST)
    assert old.get_nowait() is None
    sessions.close("council", old)  # the old stream's clean-up leaves the new session be
    assert sessions.holder("council") == HONEST
    assert sessions.offer("council", _Item()) and new.get_nowait().instruction_id == "i1"


def test_another_certificate_is_refused_while_a_session_is_live_and_taken_once_it_ends() -> None:
    """A second certificate for the partner cannot take its session over; once the old node has
    gone (a certificate replaced legitimately), the new one opens it."""
    sessions: Sessions = Sessions()
    q = sessions.open("council", HONEST)
    with pytest.raises(SessionTaken) as info:
        sessions.open("council", ROGUE)
    assert info.value.holder == HONEST
    assert sessions.holder("council") == HONEST and q.empty()
    sessions.close("council", q)
    sessions.open("council", ROGUE)
    assert sessions.holder("council") == ROGUE


def test_only_sessions_of_revoked_certificates_are_ended() -> None:
    sessions: Sessions = Sessions()
    council, police = sessions.open("council", HONEST), sessions.open("police", ROGUE)
    assert sessions.end_revoked(frozenset({"b2"})) == ["police"]
    assert police.get_nowait() is None and council.empty()
    assert sessions.connected() == {"council"}


def _hello(federation, partner: str) -> coordinator_pb2.NodeEvent:
    secret = read_secret(federation.workdir / "nodes" / partner / "linkage.secret")
    check = key_check(secret, fingerprint=federation.fingerprint, version=0)
    hello = coordinator_pb2.Hello(partner_id=partner, project_fingerprint=federation.fingerprint,
                                  key_check=check)  # fmt: skip
    return coordinator_pb2.NodeEvent(hello=hello)


def _wait_connected(federation, round_id: str, partners: set[str]) -> None:
    admin = federation.admin()
    try:
        deadline = time.monotonic() + 30
        while {p.partner for p in admin.get_round(round_id).partners if p.connected} != partners:
            assert time.monotonic() < deadline, "the nodes did not connect"
            time.sleep(0.05)
    finally:
        admin.close()


def _coordinator_log(federation) -> list:
    return read_entries(federation.workdir / "coordinator" / "audit" / "coordinator.jsonl")


def _rogue_stubs(federation, cert: Path, key: Path):
    """A channel, Coordinator stub and Keys stub presenting another council certificate."""
    from oda_fed.config import TlsFiles
    from oda_fed.proto.v1 import coordinator_pb2_grpc
    from oda_fed.transport.channel import create_channel

    tls = TlsFiles(ca=federation.workdir / "nodes" / "council" / "tls" / "ca.crt", cert=cert,
                   key=key)  # fmt: skip
    channel = create_channel(address=f"127.0.0.1:{federation.port}", tls=tls,
                             server_name="localhost")  # fmt: skip
    return (channel, coordinator_pb2_grpc.CoordinatorStub(channel),
            keys_pb2_grpc.KeysStub(channel))  # fmt: skip


def _refused_everywhere(federation, cert: Path, key: Path, round_id: str) -> list[str]:
    """The rogue certificate's Connect, upload status and key relay calls: each refused as not
    the certificate pinned for the council; their messages."""
    channel, stub, keys = _rogue_stubs(federation, cert, key)
    calls = [
        lambda: list(stub.Connect(iter([_hello(federation, "council")]), timeout=10)),
        lambda: stub.GetUploadStatus(coordinator_pb2.UploadStatusRequest(
            round_id=round_id, project_fingerprint=federation.fingerprint, upload="clks")),
        lambda: keys.GetKeys(keys_pb2.KeysRequest(project_fingerprint=federation.fingerprint)),
    ]  # fmt: skip
    details = []
    try:
        for call in calls:
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value.details()
            assert "pinned to another certificate" in info.value.details()
            details.append(info.value.details())
    finally:
        channel.close()
    return details


@pytest.mark.grpc
def test_a_second_certificate_cannot_act_for_a_partner_whose_node_is_connected(
    federation, tmp_path: Path, second_certificate
) -> None:
    """Another valid certificate for the council is refused at Connect, at upload and at the
    key relay while the council's node holds its session; refused and audited, and the round
    carries on with the council's own node."""
    cert, key = second_certificate(federation.workdir / "ca", "council", tmp_path)
    threads = [federation.run_node(p) for p in federation.partners]
    admin = federation.admin()
    round_id = admin.start_round().round_id
    admin.close()
    _wait_connected(federation, round_id, set(federation.partners))

    rogue = f"(serial {serial_hex(load_certificate(cert).serial_number)})"
    details = _refused_everywhere(federation, cert, key, round_id)
    assert all(rogue in d for d in details)

    # The project releases automatically, but not a round during which a second certificate
    # tried to act for a partner: an operator checks first.
    admin = federation.admin()
    try:
        status = admin.wait(round_id, timeout=120)
        assert status.state is RoundState.AWAITING_RELEASE, status.message
        assert f"a second certificate {rogue} tried to act for 'council'" in status.message
        admin.release_round(round_id)
        status = admin.wait(round_id, timeout=120)
    finally:
        admin.close()
    for thread, errors in threads:
        thread.join(timeout=60)
        assert not errors, errors
    assert status.state is RoundState.CLOSED, status.message
    refused = [e for e in _coordinator_log(federation)
               if e.sender == "council" and e.kind.startswith("refused:")]  # fmt: skip
    assert [e.kind for e in refused] == [
        AuditKind.REFUSED_HELLO, AuditKind.REFUSED_UPLOAD_STATUS, AuditKind.REFUSED_KEYS
    ]  # fmt: skip
    assert all(e.detail["pinned_certificate"] != e.detail["certificate"] for e in refused)


@pytest.mark.grpc
def test_a_pinned_certificate_keeps_a_second_one_out_while_its_node_is_away_and_after_a_restart(
    backed_federation, tmp_path: Path, second_certificate
) -> None:
    """The measured attack's way round the live-session rule: act for the council while its
    node is not connected. The council's certificate was pinned at its first call, so the second
    one is refused whether or not the council's node is connected, and after the coordinator
    restarts. Once the CA revokes the pinned certificate (a replacement), the pin moves to the
    next certificate that calls, and the audit log says so. On SQLite and on PostgreSQL."""
    federation = backed_federation
    status = federation.run_round()
    assert status.state is RoundState.CLOSED, status.message
    pins = [e for e in _coordinator_log(federation) if e.kind == AuditKind.CERTIFICATE_PINNED]
    ca = federation.workdir / "ca"
    serials = {e.name: e.serial for e in read_register(ca)}
    assert {e.sender: e.detail["certificate"] for e in pins} == {
        p: serials[p] for p in federation.partners
    }  # fmt: skip
    assert len(pins) == 3  # once each, at first use

    cert, key = second_certificate(ca, "council", tmp_path)
    _refused_everywhere(federation, cert, key, status.round_id)
    federation.stop_coordinator()
    federation.start_coordinator(same_port=True)
    _refused_everywhere(federation, cert, key, status.round_id)

    revoke(ca, serials["council"], reason="superseded")
    with federation.session("council", cert=cert, key=key):
        pass
    moved = [e for e in _coordinator_log(federation)
             if e.kind == AuditKind.CERTIFICATE_PINNED][3:]  # fmt: skip
    assert [(e.sender, e.detail["previous_certificate"], e.detail["previous_was"])
            for e in moved] == [("council", serials["council"], "revoked")]  # fmt: skip
    assert moved[0].detail["certificate"] == serial_hex(load_certificate(cert).serial_number)


@pytest.mark.grpc
def test_a_revoked_certificate_is_refused_at_its_next_call_while_other_nodes_carry_on(
    federation,
) -> None:
    """Revoked between rounds (so nothing of the police's reaches this round): the police's
    session ends at once and its node's next call is refused, loudly; the others stay connected
    and the round waits for the police's CLKs."""
    threads = {p: federation.run_node(p) for p in federation.partners}
    deadline = time.monotonic() + 30
    while len({e.sender for e in _coordinator_log(federation) if e.kind == "hello"}) < 3:
        assert time.monotonic() < deadline, "the nodes did not say hello"
        time.sleep(0.05)
    ca = federation.workdir / "ca"
    police = next(e for e in read_register(ca) if e.name == "police")
    revoke(ca, police.serial, reason="key-compromise")
    admin = federation.admin()
    round_id = admin.start_round().round_id
    try:
        thread, errors = threads["police"]
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], AuthError), errors
        assert "revoked" in str(errors[0]) and police.serial in str(errors[0])
        # The police's session ends (the CRL is watched every second or so; its node may have
        # been refused first); the others are still connected, and the round waits for the
        # police's CLKs.
        deadline = time.monotonic() + 10
        while (connected := {p.partner for p in admin.get_round(round_id).partners
                             if p.connected}) != {"council", "social_care"}:  # fmt: skip
            assert time.monotonic() < deadline, connected
            time.sleep(0.05)
        assert admin.get_round(round_id).state in (RoundState.OPEN, RoundState.UPLOADING)
        admin.cancel_round(round_id, reason="police certificate revoked")
    finally:
        admin.close()
    for partner in ("council", "social_care"):
        thread, errors = threads[partner]
        thread.join(timeout=60)
        assert not errors, errors
    refused = [e for e in _coordinator_log(federation) if e.kind == AuditKind.REFUSED_CALL]
    assert {e.sender for e in refused} == {"police"}
    assert "revoked" in refused[0].detail["reason"]
