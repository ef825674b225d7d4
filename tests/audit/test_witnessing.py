"""Attacks on the audit trail of a real federation (coordinator and three nodes over mutual TLS):
a dishonest coordinator or partner rewriting, cutting or deleting its own log after the other
side witnessed it, and the honest faults that must still verify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from oda_fed.audit import read_entries
from oda_fed.audit.checkpoint import read_checkpoints
from oda_fed.audit.entry import ZERO_HASH, canonical_json, leaf_hash
from oda_fed.audit.folder import verify_folder
from oda_fed.audit.report import dpo_report
from oda_fed.config import load_project
from oda_fed.pki.trust import load_certificate
from oda_fed.transport.protocol import AuditKind, RoundState


def _rewrite(path: Path, edit) -> None:
    """Rewrite a log as its owner could: ``edit`` maps the list of entries (as dicts) to a new
    list, and every seq, prev and hash is recomputed, so the log verifies on its own."""
    entries = [json.loads(line) for line in path.read_bytes().splitlines()]
    prev = ZERO_HASH
    lines = []
    for seq, entry in enumerate(edit(entries)):
        entry.update(seq=seq, prev=prev)
        entry["hash"] = leaf_hash(entry)
        prev = entry["hash"]
        lines.append(canonical_json(entry) + b"\n")
    path.write_bytes(b"".join(lines))


@pytest.fixture
def witnessed(federation):
    """A federation after one honest round; the coordinator stopped, so its log is at rest."""
    status = federation.run_round()
    assert status.state is RoundState.CLOSED, status.message
    federation.stop_coordinator()
    return federation


def _verify(fed, **kwargs):
    return verify_folder(
        fed.workdir,
        project=load_project(fed.workdir / "project.toml"),
        ca=load_certificate(fed.workdir / "coordinator" / "tls" / "ca.crt"),
        **kwargs,
    )


def _log(fed, party: str) -> Path:
    found = [p for p in fed.workdir.rglob(f"{party}.jsonl")]
    assert len(found) == 1, found
    return found[0]


def test_an_honest_round_is_witnessed_both_ways_and_verifies(witnessed) -> None:
    report = _verify(witnessed)
    assert report.ok, (report.checkpoints, report.parties, report.crossings, report.agreement)
    parties = ["coordinator", *witnessed.partners]
    assert set(report.witnessed) == set(parties)
    assert all(report.witnessed[p] > 0 for p in parties)
    # Every node holds the coordinator's checkpoint with its own signature on it, and the
    # coordinator holds each node's, cosigned.
    coordinator_held, _ = read_checkpoints(_log(witnessed, "coordinator").with_name(
        "coordinator.checkpoints.jsonl"))  # fmt: skip
    for partner in witnessed.partners:
        held, problems = read_checkpoints(_log(witnessed, partner).with_name(
            f"{partner}.checkpoints.jsonl"))  # fmt: skip
        assert not problems
        assert any(c.checkpoint.party == "coordinator" and set(c.signers) == {"coordinator", partner}
                   for c in held)  # fmt: skip
        assert any(c.checkpoint.party == partner and set(c.signers) == {partner, "coordinator"}
                   for c in coordinator_held)  # fmt: skip
    # Products and attributes crossed as the project allows; instructions name their product.
    releases = [e for e in read_entries(_log(witnessed, "council"))
                if e.kind == AuditKind.PRODUCT_RELEASE]  # fmt: skip
    assert releases and all("product" in e.detail for e in releases)


def test_an_emptied_or_deleted_coordinator_log_fails(witnessed) -> None:
    log = _log(witnessed, "coordinator")
    saved = log.read_bytes()
    log.write_bytes(b"")
    report = _verify(witnessed)
    assert not report.ok
    assert any("coordinator's log now holds 0 entries" in p for p in report.checkpoints)
    log.write_bytes(saved)
    shutil.rmtree(log.parent)  # the log and its checkpoints, gone
    report = _verify(witnessed)
    assert not report.ok
    assert any("no audit log of coordinator" in p for p in report.parties)
    assert any("coordinator's log is missing" in p for p in report.checkpoints)


def test_a_coordinator_rewriting_counts_times_or_details_with_a_fresh_chain_fails(
    witnessed,
) -> None:
    log = _log(witnessed, "coordinator")

    saved = log.read_bytes()

    def shave(entries):
        for e in entries:
            if e["kind"] == "clk_chunk" and e["sender"] == "police":
                e["records"] -= 1
                e["bytes"] -= 128
        return entries

    _rewrite(log, shave)
    report = _verify(witnessed)
    assert all(r.ok for r in report.logs)  # the chain alone is fine
    assert any("coordinator's log does not extend it" in p for p in report.checkpoints)
    assert any("police logged" in p and "one side's counts were rewritten" in p
               for p in report.crossings)  # fmt: skip
    # The DPO's report says so too, not only `audit verify`.
    dpo = dpo_report(witnessed.workdir, project=load_project(witnessed.workdir / "project.toml"))
    assert any("problem(s) with signed checkpoints" in w for w in dpo.warnings)

    # A timestamp or a detail moved, with the counts left alone: the checkpoints still catch it.
    def retime(entries):
        entries[3]["time"] = entries[3]["time"][:11] + "00:00:00.000000Z"
        return entries

    def redetail(entries):
        entries[4]["detail"] = {**entries[4]["detail"], "reason": "nothing to see"}
        return entries

    for edit in (retime, redetail):
        log.write_bytes(saved)
        _rewrite(log, edit)
        report = _verify(witnessed)
        assert all(r.ok for r in report.logs) and not report.crossings
        assert any("coordinator's log does not extend it" in p for p in report.checkpoints)


def test_removed_refusals_and_a_fake_deletion_are_caught(witnessed) -> None:
    # A refusal the coordinator would rather nobody saw: a call for the council from outside
    # its node's live session, for another project.
    witnessed.start_coordinator(same_port=True)
    channel, stub = witnessed.node_stub("council")
    from oda_fed.proto.v1 import coordinator_pb2

    with pytest.raises(Exception, match="no live session"):
        stub.GetUploadStatus(coordinator_pb2.UploadStatusRequest(
            round_id="r1", project_fingerprint="sha256:" + "0" * 64))  # fmt: skip
    channel.close()
    # A second round, so the refusal lies before a checkpoint the nodes cosign.
    assert witnessed.run_round().state is RoundState.CLOSED
    witnessed.stop_coordinator()
    log = _log(witnessed, "coordinator")
    before = read_entries(log)
    assert any(e.kind.startswith("refused:") for e in before)
    clks = next(e for e in before if e.kind == "clk_chunk")

    def launder(entries):
        kept = [e for e in entries if not e["kind"].startswith("refused:")]
        fake = dict(kept[-1], kind="retention:clks_deleted", sender="coordinator",
                    recipient="coordinator", round=clks.round, records=7, bytes=0,
                    payload_sha256=kept[0]["payload_sha256"], detail={"clk_days": 30})  # fmt: skip
        return [*kept, fake]

    _rewrite(log, launder)
    report = _verify(witnessed)
    assert any("coordinator's log does not extend it" in p for p in report.checkpoints)
    assert any("retention:clks_deleted" in p and "says 7 CLKs were deleted" in p
               for p in report.agreement)  # fmt: skip
    assert not report.ok


def test_a_partners_log_missing_from_the_folder_fails(witnessed) -> None:
    _log(witnessed, "police").unlink()
    report = _verify(witnessed)
    assert not report.ok
    assert any("no audit log of police" in p for p in report.parties)


def test_a_partner_cutting_its_own_log_is_caught_by_the_coordinators_copy(witnessed) -> None:
    log = _log(witnessed, "social_care")
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-12]))  # the chain still verifies: only the tail is gone
    report = _verify(witnessed)
    assert all(r.ok for r in report.logs)
    assert any("social_care's log now holds" in p and "cosigned by coordinator" in p
               for p in report.checkpoints)  # fmt: skip


def test_a_coordinator_that_rewrote_its_log_between_rounds_is_not_cosigned(witnessed) -> None:
    # Between rounds the coordinator drops its first few entries and rebuilds a clean chain.
    _rewrite(_log(witnessed, "coordinator"), lambda entries: entries[5:])
    witnessed.start_coordinator(same_port=True)
    status = witnessed.run_round()
    assert status.state is RoundState.CLOSED
    witnessed.stop_coordinator()
    for partner in witnessed.partners:
        refused = [e for e in read_entries(_log(witnessed, partner))
                   if e.kind == AuditKind.REFUSED_WITNESS]  # fmt: skip
        assert refused, partner
        assert "does not extend the one this party witnessed" in refused[0].detail["reason"]
    # Nothing of round two was cosigned by anyone, and the folder fails.
    report = _verify(witnessed)
    assert not report.ok
    assert any("coordinator's log does not extend it" in p for p in report.checkpoints)


def test_a_node_killed_mid_upload_and_restarted_still_verifies(backed_federation) -> None:
    """kill -9 of a node in the middle of its upload, then a restart: an honest fault, which must
    verify afterwards (chunks logged when delivered, resent ones as resends). The upload resumes
    on the coordinator's SQLite, then PostgreSQL, state."""
    federation = backed_federation
    import os
    import signal
    import subprocess
    import sys
    import time
    import tomllib

    import tomli_w

    config = federation.node_config("police")
    doc = tomllib.loads(config.read_text())
    doc["chunk_records"] = 1  # one record per chunk, so the upload takes long enough to cut
    config.write_text(tomli_w.dumps(doc))
    round_id = federation.start_round()
    others = [federation.run_node(p) for p in federation.partners if p != "police"]
    command = [sys.executable, "-m", "oda_fed", "node", "run", "--config", str(config),
               "--rounds", "1", "--give-up-after", "30"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    node = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = federation.store()
    deadline = time.monotonic() + 120
    while True:
        state = store.uploads.state(round_id=round_id, partner="police")
        if state is not None and len(state.stored_chunks) >= 5:
            break
        assert node.poll() is None and time.monotonic() < deadline, node.stderr.read()
        time.sleep(0.005)
    node.send_signal(signal.SIGKILL)
    node.wait(timeout=30)
    cut = store.uploads.state(round_id=round_id, partner="police")
    assert cut is not None and not cut.complete  # killed mid-upload
    store.close()
    restarted = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr.decode()[-2000:]
    admin = federation.admin()
    assert admin.wait(round_id, timeout=120).state == RoundState.CLOSED
    admin.close()
    for thread, errors in others:
        thread.join(timeout=60)
        assert not errors, errors
    federation.stop_coordinator()
    report = _verify(federation)
    assert report.ok, (report.logs, report.checkpoints, report.crossings, report.agreement)
    police = read_entries(_log(federation, "police"))
    sent = [e for e in police if e.kind == AuditKind.CLK_CHUNK]
    assert len({e.detail["chunk"] for e in sent}) == len(sent) == sent[0].detail["of"]
