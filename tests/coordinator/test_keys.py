"""The linkage secret agreed among the nodes through the coordinator, which never learns it; the
key check at hello; rotation. Real coordinator, real nodes, real mutual TLS, real SQLite."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from oda_fed.audit import cross_check, read_entries, verify_dir
from oda_fed.cli import app
from oda_fed.coordinator.store import Store
from oda_fed.demo import evaluate
from oda_fed.errors import AuthError, ProtocolError
from oda_fed.pki import read_secret, secret_fingerprints
from oda_fed.pki.agreement import agreement_key, public_bytes, sign_key
from oda_fed.pki.secret import key_check, write_secret
from oda_fed.pki.trust import load_private_key
from oda_fed.proto.v1 import coordinator_pb2
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


def _agree_all(fed) -> None:
    """Every node agrees the secret, at once, as their first runs would."""
    errors: list[BaseException] = []

    def agree(partner: str) -> None:
        agent = fed.agent(partner)
        try:
            agent.agree_secret(give_up_after=30)
        except BaseException as exc:
            errors.append(exc)
        finally:
            agent.close()

    threads = [threading.Thread(target=agree, args=(p,)) for p in fed.partners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not errors, errors


def _coordinator_log(fed) -> list:
    return read_entries(fed.workdir / "coordinator" / "audit" / "coordinator.jsonl")


def _wait_uploaded(fed, round_id: str, partners: set[str]) -> None:
    admin = fed.admin()
    try:
        deadline = time.monotonic() + 90
        while True:
            status = admin.get_round(round_id)
            if {p.partner for p in status.partners if p.uploaded} >= partners:
                return
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    finally:
        admin.close()


def test_a_node_with_another_secret_is_refused_at_hello_and_spoils_nothing(federation) -> None:
    """Measured before: a node with a different secret took part and its encodings spoiled the
    round (precision 0.62) without a warning."""
    fed = federation
    police_file = fed.workdir / "nodes" / "police" / "linkage.secret"
    write_secret(police_file, os.urandom(32), force=True)
    round_id = fed.start_round()
    honest = [fed.run_node(p) for p in ("council", "social_care")]
    _wait_uploaded(fed, round_id, {"council", "social_care"})

    police = fed.agent("police")
    try:
        with pytest.raises(AuthError, match="differs from the one held by the first node") as info:
            police.run(rounds=1, give_up_after=20)
    finally:
        police.close()
    # It names the node refused and the honest one whose secret it differs from.
    message = str(info.value)
    assert "'police'" in message and ("'council'" in message or "'social_care'" in message)
    entries = _coordinator_log(fed)
    refused = [e for e in entries if e.kind == AuditKind.REFUSED_KEY_CHECK]
    assert [e.sender for e in refused] == ["police"]
    # Nothing of police's was taken: no CLK crossed, nothing is stored.
    assert not [e for e in entries if e.kind == AuditKind.CLK_CHUNK and e.sender == "police"]
    assert (
        Store(fed.workdir / "coordinator" / "state" / "coordinator.sqlite").uploads.state(
            round_id=round_id, partner="police"
        )
        is None
    )

    # Police's node is given the partners' secret; the round goes on and links well.
    shutil.copyfile(fed.workdir / "nodes" / "council" / "linkage.secret", police_file)
    thread, errors = fed.run_node("police")
    admin = fed.admin()
    try:
        status = admin.wait(round_id, timeout=120)
    finally:
        admin.close()
    for t, errs in [*honest, (thread, errors)]:
        t.join(timeout=60)
        assert not errs, errs
    assert status.state == "closed", status.message
    quality = evaluate(fed.workdir, fed.synthetic, round_id=round_id)
    assert quality.precision > 0.95 and quality.recall > 0.8


def test_an_agreed_secret_that_differs_is_refused_even_from_the_first_node(
    agreeing_federation,
) -> None:
    """The reference for an agreed secret is the dealer's key check, so it does not matter who
    says hello first."""
    fed = agreeing_federation
    _agree_all(fed)
    (police_file,) = agreed(fed, "police")
    write_secret(police_file, os.urandom(32), force=True)
    police = fed.agent("police")
    try:
        with pytest.raises(AuthError, match="differs from the one held by the dealer 'council'"):
            police.run(rounds=1, give_up_after=20)
    finally:
        police.close()
    assert [e.sender for e in _coordinator_log(fed) if e.kind == AuditKind.REFUSED_KEY_CHECK] == [
        "police"
    ]


def _publish_and_wait(fed, partner: str) -> None:
    """``partner``'s node publishes its key, waits a moment for the dealer, and gives up."""
    agent = fed.agent(partner)
    try:
        with pytest.raises(ProtocolError, match="waiting for 'council'"):
            agent.agree_secret(give_up_after=0)
    finally:
        agent.close()


@pytest.mark.parametrize("signer", ["police", "coordinator"])
def test_a_relay_that_swaps_in_its_own_key_is_caught_and_nothing_is_wrapped(
    agreeing_federation, signer: str
) -> None:
    """A dishonest coordinator replaces police's agreement key with one of its own, to open
    what the dealer wraps for police. It cannot sign it as police: the dealer refuses."""
    fed = agreeing_federation
    for partner in ("police", "social_care"):
        _publish_and_wait(fed, partner)
    relay_key = public_bytes(agreement_key(fed.workdir / "coordinator" / "relay.agreement"))
    tls = fed.workdir / ("nodes/police/tls/police" if signer == "police" else
                         "coordinator/tls/coordinator")  # fmt: skip
    cert = Path(f"{tls}.crt").read_bytes()
    signature = b"\x30\x06\x02\x01\x01\x02\x01\x01"  # police's key is not the relay's to use
    if signer == "coordinator":
        tls_key, _ = load_private_key(Path(f"{tls}.key"), what="key")
        signature = sign_key(tls_key, fingerprint=fed.fingerprint, partner="police",
                             public_key=relay_key)  # fmt: skip
    db = sqlite3.connect(fed.workdir / "coordinator" / "state" / "coordinator.sqlite")
    with db:
        db.execute(
            "UPDATE agreement_keys SET public_key = ?, certificate = ?, signature = ? "
            "WHERE partner = 'police'",
            (relay_key, cert, signature),
        )
    db.close()

    council = fed.agent("council")
    try:
        with pytest.raises(AuthError, match="someone other than the partner put it there"):
            council.agree_secret(give_up_after=5)
    finally:
        council.close()
    council_log = fed.workdir / "nodes" / "council" / "audit" / "council.jsonl"
    assert [e.kind for e in read_entries(council_log)][-1] == AuditKind.REFUSED_AGREEMENT
    assert AuditKind.WRAPPED_SECRETS not in kinds(council_log)
    assert not agreed(fed, "council")
    store = Store(fed.workdir / "coordinator" / "state" / "coordinator.sqlite")
    assert store.keys.latest(fed.fingerprint) is None


def _rotate(fed, partner: str = "council"):
    config = str(fed.node_config(partner))
    return CliRunner().invoke(app, ["node", "keys", "rotate", "--config", config])


def test_rotation_takes_effect_between_rounds_and_the_old_key_check_is_refused(
    agreeing_federation,
) -> None:
    fed = agreeing_federation
    assert fed.run_round().state == "closed"
    (v1,) = agreed(fed, "police")
    old = key_check(read_secret(v1), fingerprint=fed.fingerprint, version=1)

    # Not during a round: the nodes switch at a round boundary.
    round_id = fed.start_round()
    refused = _rotate(fed)
    assert (
        refused.exit_code == ProtocolError.exit_code and "only between rounds" in refused.output
    ), refused.output
    admin = fed.admin()
    admin.cancel_round(round_id, reason="to rotate the secret")
    admin.close()
    # Only the dealer rotates.
    refused = _rotate(fed, "police")
    assert refused.exit_code == 2 and "only 'council'" in refused.output, refused.output

    rotated = _rotate(fed)
    assert rotated.exit_code == 0, rotated.output
    assert "key version 2" in rotated.output

    # A node still holding version 1 is refused at hello.
    channel, stub = fed.node_stub("police")
    hello = coordinator_pb2.Hello(partner_id="police", project_fingerprint=fed.fingerprint,
                                  key_version=1, key_check=old)  # fmt: skip
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Connect(iter([coordinator_pb2.NodeEvent(hello=hello)]), timeout=10))
    channel.close()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "superseded" in info.value.details()

    # The next round runs under version 2, which every node fetched, and links as well. (Each
    # node first hears that the cancelled round closed: two rounds end for it.)
    nodes = [fed.run_node(p, rounds=2) for p in fed.partners]
    admin = fed.admin()
    try:
        status = admin.wait(admin.start_round().round_id, timeout=120)
    finally:
        admin.close()
    for thread, errors in nodes:
        thread.join(timeout=60)
        assert not errors, errors
    assert status.state == "closed", status.message
    quality = evaluate(fed.workdir, fed.synthetic, round_id=status.round_id)
    assert quality.precision > 0.95 and quality.recall > 0.8
    v2 = {read_secret(agreed(fed, p)[-1]) for p in fed.partners}
    assert len(v2) == 1 and v2 != {read_secret(v1)}
    assert all(agreed(fed, p)[-1].name.endswith("-v2.secret") for p in fed.partners)

    check = CliRunner().invoke(app, ["node", "keys", "check", "--config",
                                     str(fed.node_config("social_care"))])  # fmt: skip
    expected = key_check(v2.pop(), fingerprint=fed.fingerprint, version=2)
    assert check.exit_code == 0 and expected in check.output and "key version 2" in check.output


def test_rotation_is_refused_when_entity_ids_are_kept_stable(agreeing_federation) -> None:
    fed = agreeing_federation
    fed.amend_project(lambda doc: doc["linkage"].update(stable_entity_ids=True))
    refused = _rotate(fed)
    assert refused.exit_code == 2, refused.output
    assert "keeps entity ids stable" in refused.output and "Amend" in refused.output
