"""The round lifecycle over real mutual TLS: products held until an operator releases them, an
operator cancelling a round, and a round cancelled at its deadline, each with its audit entries
on both sides; and the moves the state machine refuses."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from oda_fed.audit import cross_check, read_entries, verify_dir
from oda_fed.coordinator.store import Store
from oda_fed.errors import OdaFedError
from oda_fed.proto.v1 import admin_pb2, admin_pb2_grpc
from oda_fed.transport.protocol import AuditKind, RoundState

pytestmark = pytest.mark.grpc


def entries(fed, party: str, kind: AuditKind, round_id: str) -> list:
    """``party``'s audit entries of ``kind`` in round ``round_id``."""
    if party == "coordinator":
        log = fed.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    else:
        log = fed.workdir / "nodes" / party / "audit" / f"{party}.jsonl"
    return [e for e in read_entries(log) if e.kind == kind and e.round == round_id]


def releases(fed, partner: str, round_id: str) -> list[str]:
    folder = fed.workdir / "nodes" / partner / "state" / "releases" / round_id
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def join(threads) -> None:
    for thread, errors in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a node did not finish"
        assert not errors, errors


def logs_agree(fed) -> None:
    fed.stop_coordinator()
    reports = verify_dir(fed.workdir)
    assert all(r.ok for r in reports), [r.problems for r in reports]
    assert cross_check(reports) == []


def wait_for_uploads(fed, round_id: str, partners: list[str]) -> None:
    store = Store(fed.workdir / "coordinator" / "state" / "coordinator.sqlite")
    deadline = time.monotonic() + 60
    try:
        while not all(store.uploads.complete(round_id=round_id, partner=p) for p in partners):
            assert time.monotonic() < deadline, "the uploads did not arrive"
            time.sleep(0.1)
    finally:
        store.close()


def test_products_are_held_until_an_operator_releases_them(federation) -> None:
    federation.amend_project(lambda doc: doc["rounds"].update(auto_release=False))
    threads = [federation.run_node(p) for p in federation.partners]
    admin = federation.admin()
    round_id = admin.start_round().round_id
    held = admin.wait(round_id, timeout=120)
    assert held.state is RoundState.AWAITING_RELEASE, held.message
    assert f"oda-fed coordinator release {round_id}" in held.message
    assert Path(held.report_path).exists() and Path(held.quality_report_path).exists()
    [product] = held.products
    assert product.cells > 0 and set(product.recipients) >= set(federation.partners)
    assert held.released_by == "" and held.deadline
    # Entity ids went out; products did not.
    assert all(p.entities_delivered for p in held.partners)
    for partner in federation.partners:
        assert releases(federation, partner, round_id) == []
        assert not entries(federation, partner, AuditKind.PRODUCT_RELEASE, round_id)
    # The dashboard is written with the products, but not as released, and is listed nowhere.
    out = federation.workdir / "coordinator" / "products"
    assert (out / round_id / "dashboard.unreleased.html").exists()
    assert not (out / round_id / "dashboard.html").exists()
    assert not (out / "index.html").exists() or round_id not in (out / "index.html").read_text()

    released = admin.release_round(round_id)
    assert released.state in (RoundState.RELEASED, RoundState.CLOSED)
    assert released.released_by == "operator:operator"
    closed = admin.wait(round_id, timeout=60)
    assert closed.state is RoundState.CLOSED, closed.message
    with pytest.raises(OdaFedError, match="only a round awaiting_release can be released"):
        admin.release_round(round_id)
    admin.close()
    join(threads)

    for partner in federation.partners:
        assert releases(federation, partner, round_id) == [
            "known_to_services_by_ward.csv",
            "known_to_services_by_ward.html",
            "known_to_services_by_ward.png",
        ]
        # The release crossed once each way, logged by both sides with the same payload.
        [got] = entries(federation, partner, AuditKind.PRODUCT_RELEASE, round_id)
        [sent] = [
            e
            for e in entries(federation, "coordinator", AuditKind.PRODUCT_RELEASE, round_id)
            if e.recipient == partner
        ]
        assert got.payload_sha256 == sent.payload_sha256
    # Released: the dashboard is published and the index links to it.
    assert (out / round_id / "dashboard.html").exists()
    assert not (out / round_id / "dashboard.unreleased.html").exists()
    assert f'href="./{round_id}/dashboard.html"' in (out / "index.html").read_text()
    [approval] = entries(federation, "coordinator", AuditKind.RELEASE_ROUND, round_id)
    assert approval.sender == "operator"
    refused = entries(federation, "coordinator", AuditKind.REFUSED_CALL, round_id)
    assert [e.detail["method"] for e in refused] == ["ReleaseRound"]
    logs_agree(federation)


def test_an_operator_cancels_a_round_and_every_partner_is_told(federation) -> None:
    admin = federation.admin()
    round_id = admin.start_round().round_id
    early = [federation.run_node(p) for p in federation.partners[:2]]
    wait_for_uploads(federation, round_id, federation.partners[:2])
    late = federation.partners[2]
    assert admin.get_round(round_id).state is RoundState.UPLOADING
    # Started while one is under way: refused, saying how to end the one in the way.
    with pytest.raises(OdaFedError, match=f"cancel-round {round_id}"):
        admin.start_round()
    with pytest.raises(OdaFedError, match="say why"):
        admin.cancel_round(round_id, reason=" ")

    cancelled = admin.cancel_round(round_id, reason="the late extract is being re-run")
    assert cancelled.state is RoundState.CANCELLED
    assert "cancelled by operator 'operator': the late extract is being re-run" in cancelled.message
    join(early)  # each node was told the round ended, and stopped after one round
    with pytest.raises(OdaFedError, match="only a round not yet released can be cancelled"):
        admin.cancel_round(round_id, reason="again")
    # A partner that connects only now is told too, and is not asked to upload.
    join([federation.run_node(late)])
    assert not entries(federation, late, AuditKind.ENCODE_AND_UPLOAD, round_id)
    # The next round is not held up.
    assert admin.start_round().state is RoundState.OPEN
    admin.close()

    [act] = entries(federation, "coordinator", AuditKind.CANCEL_ROUND, round_id)
    assert act.sender == "operator" and act.detail["reason"] == "the late extract is being re-run"
    for partner in federation.partners:
        [told] = entries(federation, partner, AuditKind.ROUND_CLOSED, round_id)
        assert told.sender == "coordinator"
        [sent] = [
            e
            for e in entries(federation, "coordinator", AuditKind.ROUND_CLOSED, round_id)
            if e.recipient == partner
        ]
        assert sent.payload_sha256 == told.payload_sha256
    # Nothing was matched: no entity ids went out.
    assert not any(
        entries(federation, p, AuditKind.ENTITY_CHUNK, round_id) for p in federation.partners
    )
    logs_agree(federation)


def test_a_round_not_released_by_its_deadline_is_cancelled(federation) -> None:
    federation.amend_project(lambda doc: doc["rounds"].update(deadline_hours=3 / 3600))
    admin = federation.admin()
    started = admin.start_round()
    round_id = started.round_id
    council = federation.run_node("council")  # police and social care never connect
    ended = admin.wait(round_id, timeout=60)
    assert ended.state is RoundState.CANCELLED, ended.message
    assert f"its deadline {started.deadline} passed" in ended.message
    assert "waiting for the CLKs of police, social_care" in ended.message
    join([council])
    assert admin.start_round().state is RoundState.OPEN
    admin.close()

    [expired] = entries(federation, "coordinator", AuditKind.DEADLINE_PASSED, round_id)
    assert expired.sender == "coordinator" and expired.detail["deadline"] == started.deadline
    [told] = entries(federation, "council", AuditKind.ROUND_CLOSED, round_id)
    [sent] = entries(federation, "coordinator", AuditKind.ROUND_CLOSED, round_id)[:1]
    assert told.payload_sha256 == sent.payload_sha256
    logs_agree(federation)


def test_a_node_certificate_cannot_release_or_cancel(federation) -> None:
    from oda_fed.config import TlsFiles
    from oda_fed.transport.channel import create_channel

    tls = federation.workdir / "nodes" / "police" / "tls"
    channel = create_channel(
        address=f"127.0.0.1:{federation.port}",
        tls=TlsFiles(ca=tls / "ca.crt", cert=tls / "police.crt", key=tls / "police.key"),
        server_name="localhost",
    )
    stub = admin_pb2_grpc.AdminStub(channel)
    for call, request in (
        (stub.ReleaseRound, admin_pb2.ReleaseRoundRequest(round_id="r1")),
        (stub.CancelRound, admin_pb2.CancelRoundRequest(round_id="r1", reason="x")),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    channel.close()


def test_a_node_asked_for_a_round_that_was_cancelled_meanwhile_carries_on(federation) -> None:
    """The race an operator's cancel opens: a node acts on an instruction just as the round is
    cancelled. The coordinator refuses the call; the node answers 'not done' and keeps running,
    rather than stopping as if its project were wrong."""
    from oda_fed.node import tasks
    from oda_fed.node.client import CoordinatorClient
    from oda_fed.proto.v1 import coordinator_pb2_grpc
    from oda_fed.transport.channel import create_channel
    from oda_fed.transport.messages import EntitiesReady, Instruction

    admin = federation.admin()
    round_id = admin.start_round().round_id
    admin.cancel_round(round_id, reason="test")
    admin.close()
    agent = federation.agent("council")
    cfg = agent.state.config
    channel = create_channel(
        address=cfg.coordinator.address, tls=cfg.tls, server_name=cfg.coordinator.server_name
    )
    client = CoordinatorClient(coordinator_pb2_grpc.CoordinatorStub(channel), agent.state)
    instruction = Instruction(
        instruction_id="i-late",
        project_fingerprint=federation.fingerprint,
        round_id=round_id,
        body=EntitiesReady(),
    )
    with federation.session("council"):  # the node's own session, as when it is told to
        result, failure = tasks.handle(agent.state, client, instruction)
    channel.close()
    agent.close()
    assert failure is None and not result.ok
    assert "the coordinator refused" in result.error and "cancelled" in result.error
    assert not (federation.workdir / "nodes" / "council" / "state" / "entities.csv").exists()


def test_a_degenerate_linkage_waits_for_an_operator_despite_auto_release(
    federation, tmp_path: Path
) -> None:
    """A partner's node reads the wrong extract (another population's records), so its records
    link to no one's. Matching runs to its end all the same; the round must not then release
    itself: it waits, saying why, until an operator who has found the cause releases it."""
    from oda_fed.synth import generate, write

    write(generate(population=400, partners=3, seed=99, errors="low"), tmp_path / "other")
    (federation.workdir / "data" / "police.csv").write_bytes(
        (tmp_path / "other" / "police.csv").read_bytes()
    )
    assert load_project_auto_release(federation)
    threads = [federation.run_node(p) for p in federation.partners]
    admin = federation.admin()
    round_id = admin.start_round().round_id
    held = admin.wait(round_id, timeout=120)
    assert held.state is RoundState.AWAITING_RELEASE, held.message
    assert "degenerate fit" in held.message and "'police'" in held.message
    assert "'council' and 'social_care'" not in held.message  # their link is sound
    assert 'id="degenerate"' in Path(held.quality_report_path).read_text()
    for partner in federation.partners:
        assert releases(federation, partner, round_id) == []
    assert admin.release_round(round_id).released_by == "operator:operator"
    assert admin.wait(round_id, timeout=60).state is RoundState.CLOSED
    admin.close()
    join(threads)


def load_project_auto_release(federation) -> bool:
    from oda_fed.config import load_project

    return load_project(federation.workdir / "project.toml").project.rounds.auto_release
