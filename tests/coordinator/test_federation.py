"""A real federation on loopback: one coordinator, three nodes, mutual TLS, one round; and the
attacks and mistakes it must refuse. Servers are real; identities come from real certificates."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import grpc
import pandas as pd
import pytest
import tomli_w

from oda_fed.audit import cross_check, read_entries, verify_dir
from oda_fed.config import TlsFiles, fingerprint_bytes, load_node_config, load_project
from oda_fed.coordinator.store import Store
from oda_fed.encoding.evidence import linkage_layout
from oda_fed.encoding.exact import derive_record_key, record_keys
from oda_fed.errors import AuthError, InputDataError, ProjectMismatchError
from oda_fed.node import tasks
from oda_fed.pki import init_ca, issue, read_secret, secret_fingerprints
from oda_fed.proto.v1 import admin_pb2, admin_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc
from oda_fed.transport.channel import create_channel
from oda_fed.transport.messages import EncodeAndUpload, Instruction
from oda_fed.transport.protocol import AuditKind

pytestmark = pytest.mark.grpc


def refusals(log: Path) -> list:
    return [e for e in read_entries(log) if e.kind.startswith("refused")]


def test_full_round_delivers_entities_products_and_audit(federation) -> None:
    status = federation.run_round()
    assert status.state == "closed", status.message
    assert status.linked_entities > 0 and status.entities > status.linked_entities

    # Each node holds entity ids for exactly its own records, keyed by its own record ids.
    ids = {}
    for profile in federation.synthetic.profiles:
        local = pd.read_csv(
            federation.workdir / "nodes" / profile.id / "state" / "entities.csv", dtype=str
        )
        source = federation.synthetic.partners[profile.id]
        assert sorted(local.record_id) == sorted(source[profile.record_id_column])
        ids[profile.id] = set(federation.entity_ids(profile.id).values())
        release = federation.workdir / "nodes" / profile.id / "state" / "releases" / status.round_id
        csv = release / "known_to_services_by_ward" / "known_to_services_by_ward.csv"
        product = pd.read_csv(csv, dtype=str, keep_default_na=False)
        assert {"area", "partners", "count", "suppressed"} <= set(product.columns)
        suppressed = product[product.suppressed.str.lower() == "true"]
        assert (suppressed["count"] == "suppressed").all(), "a suppressed cell says so, never 0"
        shown = product[product.suppressed.str.lower() != "true"]["count"].astype(int)
        assert (shown % 5 == 0).all() and (shown >= 10).all()
    # Some entities are known to all three partners.
    assert ids["council"] & ids["police"] & ids["social_care"]

    assert Path(status.report_path).exists()
    # The coordinator's own reports say they are internal; only the products went to partners.
    assert 'id="internal"' in Path(status.report_path).read_text()
    quality = Path(status.report_path).with_name("quality.html")
    page = quality.read_text()
    assert 'id="internal"' in page
    assert "precision" in page
    # How each pair of partners was compared, and what the estimate was fitted on.
    assert "council × police" in page and "pairs scored" in page and "quality estimate" in page
    reports = verify_dir(federation.workdir)
    assert len(reports) == 4 and all(r.ok for r in reports), [r.problems for r in reports]
    assert cross_check(reports) == []
    # Both sides logged every crossing under the same kind, and every kind is the protocol's.
    sides = {r.party: {(e.sender, e.recipient, AuditKind(e.kind)) for e in read_entries(r.path)}
             for r in reports}  # fmt: skip
    for partner in federation.partners:
        mine = sides[partner]
        theirs = {c for c in sides["coordinator"] if partner in c[:2] and not c[2].local}
        assert {c for c in mine if not c[2].local} == theirs
        assert {k for *_, k in theirs} >= {AuditKind.CLK_CHUNK, AuditKind.ENTITY_CHUNK,
                                          AuditKind.PRODUCT_RELEASE, AuditKind.ROUND_CLOSED}  # fmt: skip


def test_coordinator_never_holds_the_secret(federation) -> None:
    federation.run_round()
    secret = read_secret(federation.workdir / "nodes" / "council" / "linkage.secret")
    needles = secret_fingerprints(secret)
    scanned = 0
    for path in (federation.workdir / "coordinator").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            scanned += 1
            for needle in needles:
                assert needle not in data, f"linkage secret found in {path}"
    assert scanned >= 5  # database, audit log, products, report, config, certificates


def test_coordinator_stores_no_record_ids_or_names(federation) -> None:
    federation.run_round()
    blob = b"".join(
        p.read_bytes() for p in (federation.workdir / "coordinator").rglob("*") if p.is_file()
    )
    council = federation.synthetic.partners["council"]
    profile = federation.synthetic.profiles[0]
    for record_id in council[profile.record_id_column].head(50):
        assert record_id.encode() not in blob
    surnames = council[profile.columns["last_name"]]
    for name in surnames[surnames.str.len() >= 7].head(50):
        assert name.encode() not in blob


def test_node_claiming_another_partner_is_refused(federation) -> None:
    # A client holding the police certificate says it is the council.
    channel, stub = federation.node_stub("police")
    fingerprint = federation.fingerprint
    hello = coordinator_pb2.NodeEvent(
        hello=coordinator_pb2.Hello(partner_id="council", project_fingerprint=fingerprint)
    )
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Connect(iter([hello]), timeout=10))
    channel.close()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "claims partner id 'council'" in info.value.details()
    assert "issued to 'police'" in info.value.details()
    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    assert any("claims partner id" in e.detail.get("reason", "") for e in refusals(log))


def test_certificate_from_another_ca_is_refused(federation, tmp_path: Path) -> None:
    rogue = tmp_path / "rogue-ca"
    init_ca(rogue, name="not the partnership")
    cert, key = issue(ca_dir=rogue, name="council", role="node", out_dir=tmp_path / "rogue")

    # The coordinator refuses it in the TLS handshake, even from a client that trusts the real CA.
    tls = TlsFiles(ca=federation.workdir / "ca" / "ca.crt", cert=cert, key=key)
    channel = create_channel(
        address=f"127.0.0.1:{federation.port}", tls=tls, server_name="localhost"
    )
    hello = coordinator_pb2.NodeEvent(hello=coordinator_pb2.Hello(partner_id="council"))
    with pytest.raises(grpc.RpcError) as info:
        list(coordinator_pb2_grpc.CoordinatorStub(channel).Connect(iter([hello]), timeout=10))
    channel.close()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    assert not [e for e in read_entries(log) if e.kind == "hello"] if log.exists() else True

    # A node configured with it says so before dialling out.
    cfg = load_node_config(federation.node_config("council"))
    doc = cfg.model_dump(mode="json", exclude_none=True)
    doc["tls"]["cert"], doc["tls"]["key"] = str(cert), str(key)
    path = tmp_path / "rogue.toml"
    path.write_text(tomli_w.dumps(doc))
    with pytest.raises(AuthError, match="not issued by this partnership's CA"):
        federation.agent("council", path)


def test_node_refuses_to_start_with_another_partners_certificate(federation) -> None:
    cfg = load_node_config(federation.node_config("council"))
    doc = cfg.model_dump(mode="json", exclude_none=True)
    police = federation.workdir / "nodes" / "police" / "tls"
    doc["tls"]["cert"], doc["tls"]["key"] = str(police / "police.crt"), str(police / "police.key")
    path = federation.workdir / "nodes" / "council" / "swapped.toml"
    path.write_text(tomli_w.dumps(doc))
    with pytest.raises(AuthError, match="certificate for 'police'.*partner 'council'"):
        federation.agent("council", path)


def test_project_fingerprint_mismatch_is_refused_and_logged(federation) -> None:
    node_dir = federation.workdir / "nodes" / "council"
    other = node_dir / "other-project.toml"
    other.write_bytes((federation.workdir / "project.toml").read_bytes() + b"\n# amended\n")
    cfg = load_node_config(federation.node_config("council"))
    doc = cfg.model_dump(mode="json", exclude_none=True)
    doc["project"] = str(other)
    doc["project_fingerprint"] = fingerprint_bytes(other.read_bytes())
    path = node_dir / "amended.toml"
    path.write_text(tomli_w.dumps(doc))
    agent = federation.agent("council", path)
    with pytest.raises(ProjectMismatchError, match="project fingerprint mismatch"):
        agent.run(rounds=1, give_up_after=5)
    agent.close()
    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    assert any(
        e.kind == "refused:hello" and "mismatch" in e.detail["reason"] for e in refusals(log)
    )


def test_node_refuses_an_instruction_for_another_project(federation) -> None:
    agent = federation.agent("council")
    instruction = Instruction(
        instruction_id="i1",
        project_fingerprint="sha256:" + "1" * 64,
        round_id="r1",
        body=EncodeAndUpload(chunk_records=10, clk_bits=1024),
    )
    result, failure = tasks.handle(agent.state, None, instruction)
    agent.close()
    assert not result.ok and failure is None
    assert "project fingerprint mismatch" in result.error
    assert not (federation.workdir / "nodes" / "council" / "state" / "rounds" / "r1").exists()
    log = federation.workdir / "nodes" / "council" / "audit" / "council.jsonl"
    assert [e.kind for e in refusals(log)] == ["refused:encode_and_upload"]


def _clk_chunk(
    round_id: str, fingerprint: str, *, records: int, clk_bits: int, clks: bytes
) -> coordinator_pb2.ClkChunk:
    """A one-chunk upload, as a (possibly misbehaving) client would send it."""
    return coordinator_pb2.ClkChunk(
        round_id=round_id,
        project_fingerprint=fingerprint,
        chunk_index=0,
        total_chunks=1,
        first_ref=0,
        records=records,
        total_records=records,
        clk_bits=clk_bits,
        clks=clks,
    )


def test_clks_of_the_wrong_length_are_refused_and_nothing_is_stored(federation) -> None:
    round_id = federation.start_round()
    fingerprint = federation.fingerprint
    short = _clk_chunk(round_id, fingerprint, records=4, clk_bits=512, clks=b"\0" * 4 * 64)
    truncated = _clk_chunk(round_id, fingerprint, records=4, clk_bits=1024, clks=b"\0" * 500)
    with federation.session("council") as stub:
        with pytest.raises(grpc.RpcError) as info:
            stub.UploadClks(iter([short]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "512 bits long but the project uses 1024-bit" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.UploadClks(iter([truncated]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "truncated" in info.value.details()
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    assert store.uploads.state(round_id=round_id, partner="council") is None
    store.close()


def test_a_node_certificate_cannot_use_the_admin_api(federation) -> None:
    channel, _ = federation.node_stub("police")
    with pytest.raises(grpc.RpcError) as info:
        admin_pb2_grpc.AdminStub(channel).StartRound(admin_pb2.StartRoundRequest(), timeout=10)
    channel.close()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_client_without_a_certificate_cannot_connect(federation) -> None:
    ca = (federation.workdir / "ca" / "ca.crt").read_bytes()
    channel = grpc.secure_channel(
        f"127.0.0.1:{federation.port}",
        grpc.ssl_channel_credentials(root_certificates=ca),
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    stub = coordinator_pb2_grpc.CoordinatorStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetUploadStatus(coordinator_pb2.UploadStatusRequest(round_id="x"), timeout=10)
    channel.close()
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_missing_column_fails_on_the_node_and_uploads_nothing(federation) -> None:
    csv = federation.workdir / "data" / "police.csv"
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    surname = federation.synthetic.profiles[1].columns["last_name"]
    backup = csv.with_suffix(".bak")
    shutil.copyfile(csv, backup)
    frame.drop(columns=[surname]).to_csv(csv, index=False)
    admin = federation.admin()
    round_id = admin.start_round().round_id
    agent = federation.agent("police")
    with pytest.raises(InputDataError, match=f"no column '{surname}'"):
        agent.run(rounds=1, give_up_after=5)
    agent.close()
    status = admin.get_round(round_id)
    admin.close()
    assert status.state == "open"
    assert "police could not do 'encode_and_upload'" in status.message
    assert "InputDataError" in status.message and surname not in status.message
    assert not (federation.workdir / "nodes" / "police" / "state" / "rounds" / round_id).exists()
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    assert store.uploads.state(round_id=round_id, partner="police") is None
    store.close()


def test_a_restarted_coordinator_resumes_the_round(backed_federation) -> None:
    federation = backed_federation  # on SQLite, then on PostgreSQL
    round_id = federation.start_round()
    # Two partners upload, then the coordinator goes down before the third arrives.
    early = [federation.run_node(p, rounds=1) for p in federation.partners[:2]]
    store = federation.store()
    deadline = time.monotonic() + 60
    while not all(
        store.uploads.complete(round_id=round_id, partner=p) for p in federation.partners[:2]
    ):
        assert time.monotonic() < deadline, "the first two uploads did not arrive"
        time.sleep(0.1)
    store.close()
    federation.stop_coordinator()
    federation.start_coordinator(same_port=True)
    # The early nodes reconnect by themselves; the third joins now.
    late = federation.run_node(federation.partners[2], rounds=1)
    admin = federation.admin()
    status = admin.wait(round_id, timeout=120)
    admin.close()
    assert status.state == "closed", status.message
    for thread, errors in [*early, late]:
        thread.join(timeout=90)
        assert not errors, errors
    counts = [
        len(pd.read_csv(federation.workdir / "nodes" / p / "state" / "entities.csv"))
        for p in federation.partners
    ]
    assert counts == [len(federation.synthetic.partners[p]) for p in federation.partners]
    assert min(counts) > 0
    # Reconnecting through the outage left no one-sided entries: both sides' logs still agree.
    federation.stop_coordinator()
    reports = verify_dir(federation.workdir)
    assert all(r.ok for r in reports)
    assert cross_check(reports) == []


def test_a_hostile_round_id_is_refused_and_the_log_stays_valid(federation) -> None:
    fingerprint = federation.fingerprint
    chunk = _clk_chunk(
        "../../" + "x" * 500, fingerprint, records=1, clk_bits=1024, clks=b"\0" * 128
    )
    with federation.session("council") as stub, pytest.raises(grpc.RpcError) as info:
        stub.UploadClks(iter([chunk]))
    # Longer than any round id: refused before it is looked up (protocol.FIELD_BOUNDS).
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ClkChunk.round_id is 506 characters long" in info.value.details()
    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    assert all(r.ok for r in verify_dir(log.parent))
    assert [e.round for e in refusals(log)] == [None]


def test_a_certificate_for_a_non_partner_is_refused(federation, tmp_path: Path) -> None:
    # Issued by the partnership CA, but 'fire' is not a partner in this project.
    cert, key = issue(ca_dir=federation.workdir / "ca", name="fire", role="node", out_dir=tmp_path)
    tls = TlsFiles(ca=federation.workdir / "ca" / "ca.crt", cert=cert, key=key)
    channel = create_channel(
        address=f"127.0.0.1:{federation.port}", tls=tls, server_name="localhost"
    )
    fingerprint = federation.fingerprint
    hello = coordinator_pb2.NodeEvent(
        hello=coordinator_pb2.Hello(partner_id="fire", project_fingerprint=fingerprint)
    )
    with pytest.raises(grpc.RpcError) as info:
        list(coordinator_pb2_grpc.CoordinatorStub(channel).Connect(iter([hello]), timeout=10))
    channel.close()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'fire' is not a partner" in info.value.details()


def test_tokens_the_project_did_not_agree_are_refused(federation) -> None:
    round_id = federation.start_round()
    fingerprint = federation.fingerprint
    chunk = _clk_chunk(round_id, fingerprint, records=1, clk_bits=1024, clks=b"\0" * 128)
    chunk.tokens.add(field="nhs_number", values=[b"\1" * 32])
    with federation.session("council") as stub, pytest.raises(grpc.RpcError) as info:
        stub.UploadClks(iter([chunk]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "agrees keyed tokens for no fields" in info.value.details()


# --- stable entity ids across rounds (`[linkage] stable_entity_ids`) ------------------------------


def opt_in_to_stable_ids(fed) -> None:
    fed.amend_project(lambda doc: doc["linkage"].update(stable_entity_ids=True))


def node_entities(fed) -> dict[str, dict[str, str]]:
    """Each node's latest entities.csv: partner -> record id -> entity id."""
    out = {}
    for partner in fed.partners:
        path = fed.workdir / "nodes" / partner / "state" / "entities.csv"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        out[partner] = dict(zip(frame.record_id, frame.entity_id, strict=True))
    return out


def add_records(fed, partner: str, count: int) -> list[str]:
    """Append ``count`` new records (copies of existing rows under new ids and first names)."""
    profile = next(p for p in fed.synthetic.profiles if p.id == partner)
    csv = fed.workdir / "data" / f"{partner}.csv"
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    new = frame.head(count).copy()
    new_ids = [f"NEW{i:05d}" for i in range(count)]
    new[profile.record_id_column] = new_ids
    new[profile.columns["first_name"]] = [f"Newname{chr(97 + i % 26)}" for i in range(count)]
    pd.concat([frame, new]).to_csv(csv, index=False)
    return new_ids


def test_stable_entity_ids_survive_a_round_in_which_a_partner_adds_records(
    federation, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="oda_fed.node.tasks")
    opt_in_to_stable_ids(federation)
    first = federation.run_round()
    assert first.state == "closed", first.message
    assert "linked index build" in first.message
    assert Path(first.report_path).with_name("quality.html").exists()
    before = node_entities(federation)

    added = add_records(federation, "police", 12)
    second = federation.run_round()
    assert second.state == "closed", second.message
    assert "updated incrementally" in second.message and "12 new" in second.message
    # The update writes its own quality report, from its new records.
    assert "this update's records" in second.message
    page = Path(second.report_path).with_name("quality.html").read_text()
    assert "new and changed records" in page
    after = node_entities(federation)
    # The attack of a partner that adds one record and reads whether it joined an entity from
    # the round-closed message: the message carries none of the coordinator's figures.
    told = [r.getMessage() for r in caplog.records if " ended: " in r.getMessage()]
    assert len(told) == 2 * len(federation.partners)
    assert all(m.endswith("ended: closed closed: every delivery acknowledged") for m in told), told

    for partner in federation.partners:
        # Every record present in both rounds keeps its entity id, at every node.
        assert before[partner].keys() <= after[partner].keys()
        moved = [r for r, e in before[partner].items() if after[partner][r] != e]
        assert not moved, f"{partner}: {len(moved)} records changed entity id"
    assert set(after["police"]) == set(before["police"]) | set(added)
    assert all(after["police"][r] for r in added)
    # One linked index file; the record keys it was fed are the node's record ids, keyed, in
    # the order of this round's refs.
    state = federation.workdir / "coordinator" / "state"
    assert len(list(state.glob("linked-*.index"))) == 1
    refs = federation.workdir / "nodes" / "police" / "state" / "rounds" / second.round_id
    record_ids = pd.read_csv(refs / "refs.csv", dtype=str, keep_default_na=False).record_id
    key = derive_record_key(
        read_secret(federation.workdir / "nodes" / "police" / "linkage.secret"),
        context=load_project(federation.workdir / "project.toml").project.name,
        partner="police",
    )
    store = Store(state / "coordinator.sqlite")
    held = store.uploads.record_keys(round_id=second.round_id, partner="police")
    store.close()
    assert held == [k.hex() for k in record_keys(list(record_ids), key=key)]

    # Both sides' logs say that record keys crossed with the CLKs, and still agree.
    for party, log in [
        ("police", federation.workdir / "nodes" / "police" / "audit" / "police.jsonl"),
        ("coordinator", federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"),
    ]:
        chunks = [e for e in read_entries(log) if e.kind == "clk_chunk" and e.sender == "police"]
        assert len(chunks) == 2 and all(e.detail.get("record_keys") is True for e in chunks), party
    federation.stop_coordinator()
    reports = verify_dir(federation.workdir)
    assert all(r.ok for r in reports) and cross_check(reports) == []

    # Record keys are pseudonyms: no record id, name or secret is in the coordinator's files.
    blob = b"".join(
        p.read_bytes() for p in (federation.workdir / "coordinator").rglob("*") if p.is_file()
    )
    for profile in federation.synthetic.profiles:
        data = pd.read_csv(federation.workdir / "data" / f"{profile.id}.csv", dtype=str)
        for record_id in data[profile.record_id_column].head(50):
            assert record_id.encode() not in blob, f"a {profile.id} record id is in clear"
        surnames = data[profile.columns["last_name"]].dropna()
        for name in surnames[surnames.str.len() >= 7].head(30):
            assert name.encode() not in blob
    for record_id in added:
        assert record_id.encode() not in blob
    secret = read_secret(federation.workdir / "nodes" / "council" / "linkage.secret")
    assert not any(needle in blob for needle in secret_fingerprints(secret))


def test_without_opt_in_entity_ids_are_fresh_every_round(federation) -> None:
    assert federation.run_round().state == "closed"
    before = node_entities(federation)
    second = federation.run_round()
    assert second.state == "closed" and "incremental" not in second.message
    after = node_entities(federation)
    for partner in federation.partners:
        assert before[partner].keys() == after[partner].keys()
        assert not set(before[partner].values()) & set(after[partner].values())
    assert not list((federation.workdir / "coordinator" / "state").glob("linked-*.index"))


def _upload_refused(federation, chunk: coordinator_pb2.ClkChunk) -> str:
    with federation.session("council") as stub, pytest.raises(grpc.RpcError) as info:
        stub.UploadClks(iter([chunk]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return info.value.details()


def test_record_keys_of_the_wrong_number_are_refused_and_nothing_is_stored(federation) -> None:
    opt_in_to_stable_ids(federation)
    round_id = federation.start_round()
    fingerprint = federation.fingerprint

    def chunk(keys: list[bytes]) -> coordinator_pb2.ClkChunk:
        c = _clk_chunk(round_id, fingerprint, records=3, clk_bits=1024, clks=b"\0" * 3 * 128)
        c.record_keys.extend(keys)
        return c

    assert "carries 2 for 3 CLKs" in _upload_refused(federation, chunk([b"\1" * 32, b"\2" * 32]))
    assert "carries 0 for 3 CLKs" in _upload_refused(federation, chunk([]))
    assert "32-byte" in _upload_refused(federation, chunk([b"\1" * 32, b"\2" * 32, b"\3" * 31]))
    assert "repeats a record key" in _upload_refused(federation, chunk([b"\1" * 32] * 3))
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    assert store.uploads.state(round_id=round_id, partner="council") is None
    store.close()
    federation.stop_coordinator()  # writes the refusals counted since the first
    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    refused = refusals(log)
    # The first refusal in full, the three after it counted in one entry.
    assert [e.kind for e in refused] == ["refused:clk_upload"] * 2
    assert "carries 2 for 3 CLKs" in refused[0].detail["reason"]
    assert (
        refused[1].detail["repeats"] == 3 and "repeats a record key" in refused[1].detail["reason"]
    )
    assert not [e for e in read_entries(log) if e.kind == "clk_chunk"]


def test_record_keys_are_refused_when_the_project_does_not_opt_in(federation) -> None:
    round_id = federation.start_round()
    chunk = _clk_chunk(round_id, federation.fingerprint, records=1, clk_bits=1024, clks=b"\0" * 128)
    chunk.record_keys.append(b"\1" * 32)
    assert "does not set stable_entity_ids" in _upload_refused(federation, chunk)
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    assert store.uploads.state(round_id=round_id, partner="council") is None
    store.close()


def _nothing_stored(federation, round_id: str) -> None:
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    try:
        assert store.uploads.state(round_id=round_id, partner="council") is None
    finally:
        store.close()
    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    assert not [e for e in read_entries(log) if e.kind == AuditKind.CLK_CHUNK]


def test_evidence_the_project_does_not_agree_is_refused(federation) -> None:
    """A node of a CLK-only project that sends its fields' filters anyway (more than its DPO
    signed for) is refused, and nothing of the chunk is kept."""
    federation.amend_project(lambda doc: doc["linkage"].update(method="clk"))
    round_id = federation.start_round()
    chunk = _clk_chunk(round_id, federation.fingerprint, records=2, clk_bits=1024, clks=b"\1" * 256)
    chunk.evidence.add(name="first_name", data=b"\7" * 64)
    assert 'does not link with method = "fields"' in _upload_refused(federation, chunk)
    _nothing_stored(federation, round_id)


def test_evidence_other_than_the_projects_fields_give_is_refused(federation) -> None:
    federation.amend_project(lambda doc: doc["linkage"].update(method="fields"))
    layout = linkage_layout(load_project(federation.workdir / "project.toml").project.linkage)
    round_id = federation.start_round()

    def chunk(columns: list[tuple[str, int]], records: int = 2) -> coordinator_pb2.ClkChunk:
        c = _clk_chunk(round_id, federation.fingerprint, records=records, clk_bits=1024,
                       clks=b"\1" * records * 128)  # fmt: skip
        for name, size in columns:
            c.evidence.add(name=name, data=b"\3" * size)
        return c

    whole = [(name, 2 * width) for name, width in layout]
    # A column the project does not give (an extra field), one left out, or a reordering.
    extra = _upload_refused(federation, chunk([*whole, ("nhs_number_filter", 64)]))
    assert "nhs_number_filter" in extra and "encode with the signed project" in extra
    assert "encode with the signed project" in _upload_refused(federation, chunk(whole[1:]))
    assert "encode with the signed project" in _upload_refused(federation, chunk(whole[::-1]))
    # A truncated column.
    short = [*whole[:-1], (whole[-1][0], whole[-1][1] - 1)]
    assert "truncated" in _upload_refused(federation, chunk(short))
    assert "carries none" in _upload_refused(federation, chunk([]))
    _nothing_stored(federation, round_id)
