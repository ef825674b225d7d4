"""Faults the coordinator must survive or refuse clearly: a partner's extract with no records
wedges nothing (the operator sees which partner failed and why); a damaged database is refused
at start-up with what to do; a lost one is refused while the audit log shows earlier rounds,
unless the operator accepts the loss, which is audited."""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import tomli_w
from typer.testing import CliRunner

from oda_fed.audit import read_entries
from oda_fed.cli import app
from oda_fed.config import load_coordinator_config
from oda_fed.coordinator.chunks import Chunk
from oda_fed.coordinator.recovery import ledger_path_for
from oda_fed.coordinator.server import serve
from oda_fed.coordinator.store import Store
from oda_fed.errors import InputDataError, StateError
from oda_fed.node.sources import EmptyExtractError
from oda_fed.transport.messages import Upload

pytestmark = pytest.mark.grpc


def test_a_header_only_extract_is_reported_and_the_round_can_be_cancelled_and_rerun(
    federation,
) -> None:
    csv = federation.workdir / "data" / "police.csv"
    backup = csv.with_suffix(".bak")
    shutil.copyfile(csv, backup)
    pd.read_csv(csv, dtype=str, keep_default_na=False).iloc[0:0].to_csv(csv, index=False)
    admin = federation.admin()
    try:
        round_id = admin.start_round().round_id
        agent = federation.agent("police")
        with pytest.raises(EmptyExtractError, match="header but no records"):
            agent.run(rounds=1, give_up_after=5)
        agent.close()

        # The operator is told which partner failed and why, in the round and per partner.
        status = admin.get_round(round_id)
        reason = "EmptyExtractError on the node: the extract has a header but no records"
        assert status.state == "open"
        assert f"police could not do 'encode_and_upload': {reason}" in status.message
        errors = {p.partner: p.last_error for p in status.partners}
        assert errors == {
            "council": "",
            "police": f"encode_and_upload: {reason}; see the node's log",
            "social_care": "",
        }
        # The operator's CLI reads the address from coordinator.toml: the port the fixture bound.
        doc = tomllib.loads(federation.coordinator_config.read_text())
        federation.coordinator_config.write_text(
            tomli_w.dumps({**doc, "listen": f"127.0.0.1:{federation.port}"})
        )
        shown = CliRunner(env={"COLUMNS": "250"}).invoke(
            app,
            ["coordinator", "status", "--config", str(federation.coordinator_config),
             "--round", round_id],
        )  # fmt: skip
        assert shown.exit_code == 0, shown.output
        assert "last error" in shown.output and "EmptyExtractError" in shown.output

        # Nothing wedged: the round is cancelled and the next one runs to its end.
        assert admin.cancel_round(round_id, reason="empty extract").state == "cancelled"
        shutil.copyfile(backup, csv)
        # Each node first hears that the cancelled round ended, then takes part in the new one.
        nodes = [federation.run_node(p, rounds=2) for p in federation.partners]
        status = admin.wait(admin.start_round().round_id, timeout=120)
    finally:
        admin.close()
    for thread, errors in nodes:
        thread.join(timeout=60)
        assert not errors, errors
    assert status.state == "closed", status.message
    assert all(p.records > 0 and not p.last_error for p in status.partners)
    # What holds CLKs, keys, the ref mapping or state is the owner's only.
    for partner in federation.partners:
        node = federation.workdir / "nodes" / partner
        prepared = node / "state" / "rounds" / status.round_id
        assert {p.name for p in prepared.iterdir()} >= {"refs.csv", "clks.npy", "entities.csv"}
        private = [node / "state", prepared, *prepared.iterdir(), node / "state" / "entities.csv",
                   node / "linkage.secret", node / "tls" / f"{partner}.key"]  # fmt: skip
        assert_owner_only(private)
    state = federation.workdir / "coordinator" / "state"
    assert_owner_only([state, state / "coordinator.sqlite"])


def assert_owner_only(paths: list[Path]) -> None:
    modes = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths}
    assert modes == {str(p): "0o700" if p.is_dir() else "0o600" for p in paths}


def test_a_missing_extract_stops_the_node_with_a_clear_error(federation) -> None:
    federation.edit_source("police", lambda source, _: source.update(path="gone.csv"))
    admin = federation.admin()
    round_id = admin.start_round().round_id
    agent = federation.agent("police")
    with pytest.raises(InputDataError, match=r"gone\.csv: file not found"):
        agent.run(rounds=1, give_up_after=5)
    agent.close()
    status = admin.get_round(round_id)
    admin.close()
    police = next(p for p in status.partners if p.partner == "police")
    assert police.last_error == "encode_and_upload: InputDataError on the node; see the node's log"


# --- the coordinator's database: damage and loss are refused at start-up ----------------------

PAGE = 4096
LATER = datetime.now(UTC) + timedelta(days=1)


def _busy_store(path: Path) -> None:
    """A database as a coordinator leaves it after a few rounds: many pages of CLK chunks."""
    store = Store(path)
    rng = np.random.default_rng(5)
    for n in range(3):
        round_id = f"r{n}"
        store.rounds.create(
            round_id=round_id, project="sha256:" + "0" * 64, partners=["a", "b"], deadline=LATER
        )
        for index in range(4):
            store.uploads.store(
                round_id=round_id,
                partner="a",
                upload=Upload(),
                chunk=Chunk(
                    chunk_index=index,
                    total_chunks=4,
                    first_ref=index * 100,
                    records=100,
                    total_records=400,
                    data=rng.integers(0, 2**63, size=(100, 16), dtype="<u8").tobytes(),
                ),
            )
    store.close()


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(lambda size: 0, id="header"),
        pytest.param(lambda size: (size // PAGE // 2) * PAGE, id="page-mid-file"),
    ],
)
def test_a_damaged_database_is_refused_with_what_to_do(tmp_path: Path, where) -> None:
    path = tmp_path / "state" / "coordinator.sqlite"
    _busy_store(path)
    raw = bytearray(path.read_bytes())
    assert len(raw) > 20 * PAGE
    at = where(len(raw))
    raw[at : at + PAGE] = np.random.default_rng(7).bytes(PAGE)
    path.write_bytes(bytes(raw))
    with pytest.raises(StateError) as caught:
        Store(path)
    message = str(caught.value)
    assert f"the coordinator's database {path} is damaged" in message
    assert "restore state_dir from your latest backup" in message
    assert caught.value.exit_code == 8
    assert path.read_bytes() == raw  # refused before anything was written


def test_the_database_and_its_folder_are_the_owners_only(tmp_path: Path) -> None:
    path = tmp_path / "state" / "coordinator.sqlite"
    _busy_store(path)
    os.chmod(path.parent, 0o755)  # loosened by hand, say: opening tightens it again
    os.chmod(path, 0o644)
    Store(path).close()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _serve_accepting_empty_state(federation) -> None:
    """Start the coordinator with ``accept_empty_state``, wait until it serves, stop it."""
    stop, port_file = threading.Event(), federation.workdir / "coordinator" / "accepted-port"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            serve(load_coordinator_config(federation.coordinator_config),
                  config_path=federation.coordinator_config, port_file=port_file,
                  stop_event=stop, grace=1.0, accept_empty_state=True)  # fmt: skip
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not port_file.exists():
        assert not errors, errors
        assert time.monotonic() < deadline, "the coordinator did not start"
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=30)
    assert not errors, errors


def test_a_lost_database_is_refused_unless_the_loss_is_accepted_and_audited(
    federation, serve_refused
) -> None:
    federation.start_round()
    federation.stop_coordinator()
    state = federation.workdir / "coordinator" / "state"
    path = state / "coordinator.sqlite"
    audit = load_coordinator_config(federation.coordinator_config).audit_path
    kept = path.read_bytes()

    def lose(how: str) -> None:
        for name in ("coordinator.sqlite-wal", "coordinator.sqlite-shm"):
            (state / name).unlink(missing_ok=True)
        if how == "missing":
            path.unlink()
        elif how == "zero_bytes":
            path.write_bytes(b"")
        else:  # a new database, as a fresh install would make
            path.unlink()
            Store(path).close()

    for how, said in [("missing", "is missing"), ("zero_bytes", "is empty (zero bytes)"),
                      ("no_rounds", "holds no rounds")]:  # fmt: skip
        lose(how)
        before = path.read_bytes() if path.exists() else None
        result = serve_refused(federation.coordinator_config)
        assert result.exit_code == 8, result.output
        assert "Traceback" not in result.output
        assert f"{path} {said}" in result.output.replace("\n", " ")
        assert "shows 1 earlier round(s)" in result.output
        assert "--accept-empty-state" in result.output
        # Refused before anything was made or changed.
        assert (path.read_bytes() if path.exists() else None) == before

    lose("missing")
    _serve_accepting_empty_state(federation)
    accepted = [e for e in read_entries(audit) if e.kind == "operator:accept_empty_state"]
    assert len(accepted) == 1
    assert accepted[0].detail == {"database": "missing", "earlier_rounds": 1}
    # Accepted once: the next start needs no flag, and the restored database is still welcome.
    federation.start_coordinator()
    federation.stop_coordinator()
    path.write_bytes(kept)
    federation.start_coordinator()
    assert federation.errors == []


def test_a_lost_postgresql_database_is_refused_unless_the_loss_is_accepted(
    federation, postgres_url: str, serve_refused
) -> None:
    """As a lost SQLite file: an empty database (a server rebuilt without its backup) while the
    audit log shows a round is refused, with how to restore it; accepted, the loss is audited."""
    federation.stop_coordinator()
    doc = tomllib.loads(federation.coordinator_config.read_text())
    federation.coordinator_config.write_text(tomli_w.dumps({**doc, "database": postgres_url}))
    federation.start_coordinator()
    federation.start_round()
    federation.stop_coordinator()
    engine = sa.create_engine(postgres_url)
    with engine.begin() as db:
        db.exec_driver_sql("DROP SCHEMA public CASCADE")
        db.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    refused = serve_refused(federation.coordinator_config)
    output = " ".join(refused.output.split())
    assert refused.exit_code == 8, output
    shown = sa.make_url(postgres_url).render_as_string(hide_password=True)
    assert f"the coordinator's database {shown} holds no rounds" in output, output
    assert "shows 1 earlier round(s)" in output and "pg_restore" in output
    assert "--accept-empty-state" in output and "Traceback" not in output

    _serve_accepting_empty_state(federation)
    assert _accepted(federation) == [{"database": "no_rounds", "earlier_rounds": 1}]
    federation.start_coordinator()  # accepted once: the next start needs no flag
    assert federation.errors == []


# --- the rounding key, the release ledger and the pseudonym key: their loss is refused --------


def _state_files(state: Path) -> dict[str, bytes]:
    """Every file of the coordinator's state folder but its audit log, with its content."""
    return {
        str(p.relative_to(state)): p.read_bytes()
        for p in state.rglob("*")
        if p.is_file() and p.relative_to(state).parts[0] != "audit"
    }


def _accepted(federation) -> list[dict]:
    audit = load_coordinator_config(federation.coordinator_config).audit_path
    return [dict(e.detail) for e in read_entries(audit) if e.kind == "operator:accept_empty_state"]


def test_lost_disclosure_state_or_pseudonym_key_is_refused_after_a_release(
    federation, serve_refused
) -> None:
    """A released round rounded its tables with disclosure.key, recorded its cells in the ledger
    and delivered entity ids under pseudonyms.key: each lost (deleted or truncated) is refused,
    with what was lost and how to restore it, and nothing in the state folder is made or
    changed; a fresh key or empty ledger would re-round published cells and let the next release
    be differenced against this one."""
    assert federation.run_round().state == "closed"
    federation.stop_coordinator()
    state = federation.workdir / "coordinator" / "state"
    key, names = state / "disclosure.key", state / "pseudonyms.key"
    ledger = ledger_path_for(state, federation.fingerprint)
    assert ledger.is_file()  # where the coordinator keeps it: the file guarded is the one in use
    kept = _state_files(state)

    for lost, how, said in [
        (key, "missing", "the rounding key {} is missing"),
        (key, "zero_bytes", "the rounding key {} is empty (zero bytes)"),
        (ledger, "missing", "the release ledger {} is missing"),
        (ledger, "zero_bytes", "the release ledger {} is empty (zero bytes)"),
        (names, "missing", "the pseudonym key {} is missing"),
    ]:
        if how == "missing":
            lost.unlink()
        else:
            lost.write_bytes(b"")
        before = _state_files(state)
        result = serve_refused(federation.coordinator_config)
        output = " ".join(result.output.split())
        assert result.exit_code == 8, output
        assert "Traceback" not in output
        assert said.format(lost) in output, output
        assert "but the audit log shows 1 " in output
        assert f"Restore these files ({lost.name}) into state_dir from your latest backup" in output
        assert "--accept-empty-state" in output
        assert _state_files(state) == before  # refused before anything was made or changed
        lost.write_bytes(kept[lost.name])
    assert _accepted(federation) == []
    federation.start_coordinator()  # restored from the backup: welcome again
    federation.stop_coordinator()
    assert federation.errors == []


def test_accepting_lost_disclosure_state_is_audited_and_counts_only_later_releases(
    federation, serve_refused
) -> None:
    assert federation.run_round().state == "closed"
    federation.stop_coordinator()
    state = federation.workdir / "coordinator" / "state"
    ledger = ledger_path_for(state, federation.fingerprint)
    kept_ledger = ledger.read_bytes()

    # The database lost and accepted: that excuses the database only, not the ledger.
    (state / "coordinator.sqlite").unlink()
    _serve_accepting_empty_state(federation)
    assert _accepted(federation) == [{"database": "missing", "earlier_rounds": 1}]
    ledger.unlink()
    result = serve_refused(federation.coordinator_config)
    assert result.exit_code == 8 and "the release ledger" in result.output, result.output

    # Every lost part named in one refusal; accepted, each is on the record.
    (state / "disclosure.key").write_bytes(b"")
    (state / "pseudonyms.key").unlink()
    output = " ".join(serve_refused(federation.coordinator_config).output.split())
    for said in ("rounding key", "release ledger", "pseudonym key"):
        assert f"the {said} " in output, output
    _serve_accepting_empty_state(federation)
    assert _accepted(federation)[1:] == [
        {"disclosure_key": "zero_bytes", "disclosure_key_rounds": 1, "ledger": "missing",
         "ledger_rounds": 1, "pseudonyms_key": "missing", "pseudonyms_key_rounds": 1}
    ]  # fmt: skip
    # Accepted once: the next start needs no flag, and a fresh key replaces the empty file.
    federation.start_coordinator()
    assert federation.run_round().state == "closed"
    federation.stop_coordinator()
    assert len((state / "disclosure.key").read_bytes()) > 0 and ledger.is_file()
    # A release since the acceptance counts again: losing the new ledger is refused.
    assert ledger.read_bytes() != kept_ledger
    ledger.unlink()
    result = serve_refused(federation.coordinator_config)
    assert result.exit_code == 8 and "shows 1 released round(s)" in result.output, result.output
