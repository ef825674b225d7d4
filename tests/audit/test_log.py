"""Appending: the chain continues across reopenings, survives threads, and refuses bad input."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from oda_fed.audit import AuditLog, leaf_hash, read_entries, verify_log
from oda_fed.errors import AuditError
from oda_fed.pki import secret_fingerprints

ZERO = "0" * 64


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_append_writes_a_chained_canonical_entry(tmp_path: Path, project: str) -> None:
    path = tmp_path / "audit" / "council.jsonl"
    with AuditLog(path, party="council") as log:
        assert (log.next_seq, log.head) == (0, ZERO)
        first = log.append(
            sender="council",
            recipient="coordinator",
            kind="clk_chunk",
            project=project,
            payload=b"\x01\x02\x03",
            records=7,
            round_id="r20260102T030405-ab12",
            detail={"chunk": 0, "of": 2},
        )
        second = log.append(sender="coordinator", recipient="council", kind="ack", project=project)
    assert (first.seq, first.prev, first.bytes, first.records) == (0, ZERO, 3, 7)
    assert first.payload_sha256 == hashlib.sha256(b"\x01\x02\x03").hexdigest()
    assert (second.seq, second.prev) == (1, first.hash)
    assert second.payload_sha256 == hashlib.sha256(b"").hexdigest() and second.bytes == 0
    raw = path.read_bytes().splitlines()
    assert raw == [first.line(), second.line()]
    for obj in _lines(path):
        assert obj["hash"] == leaf_hash(obj)
        assert obj["time"].endswith("Z") and len(obj["time"]) == 27
    assert not stat.S_IMODE(path.stat().st_mode) & 0o007  # not world-readable


def test_reopening_continues_the_chain(tmp_path: Path, project: str, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 3)
    last = _lines(path)[-1]
    with AuditLog(path, party="council") as log:
        assert (log.next_seq, log.head) == (3, last["hash"])
        entry = log.append(sender="council", recipient="coordinator", kind="bye", project=project)
    assert (entry.seq, entry.prev) == (3, last["hash"])
    report = verify_log(path)
    assert report.ok and report.entries == 4 and report.head == entry.hash
    assert [e.seq for e in read_entries(path)] == [0, 1, 2, 3]


def test_payload_can_be_given_by_hash_and_size(tmp_path: Path, project: str) -> None:
    digest = hashlib.sha256(b"streamed").hexdigest()
    with AuditLog(tmp_path / "c.jsonl", party="council") as log:
        entry = log.append(
            sender="council",
            recipient="coordinator",
            kind="clk_upload",
            project=project,
            payload_sha256=digest.upper(),
            size=8,
        )
        assert (entry.payload_sha256, entry.bytes) == (digest, 8)
        with pytest.raises(AuditError, match="size is required"):
            log.append(
                sender="council",
                recipient="coordinator",
                kind="x",
                project=project,
                payload_sha256=digest,
            )
        with pytest.raises(AuditError, match="does not match the payload"):
            log.append(
                sender="council",
                recipient="coordinator",
                kind="x",
                project=project,
                payload=b"other",
                payload_sha256=digest,
            )
        with pytest.raises(AuditError, match="size does not match"):
            log.append(
                sender="council",
                recipient="coordinator",
                kind="x",
                project=project,
                payload=b"streamed",
                size=9,
            )
        assert log.next_seq == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"detail": {"rows": ["John Nicholson"]}}, "no nesting"),
        ({"detail": {"note": "John Nicholson, 12 Acacia Avenue " * 10}}, "at most 200"),
        ({"sender": "police"}, "must be the sender or the recipient"),
        ({"project": "project-one"}, "'project' must be a fingerprint"),
        ({"records": -1}, "'records' must be a non-negative integer"),
    ],
)
def test_append_refuses_bad_entries_without_writing(
    tmp_path: Path, project: str, kwargs: dict, message: str
) -> None:
    path = tmp_path / "council.jsonl"
    args = {"sender": "council", "recipient": "coordinator", "kind": "x", "project": project}
    with AuditLog(path, party="council") as log:
        with pytest.raises(AuditError, match=message) as info:
            log.append(**{**args, **kwargs})
        assert "Nicholson" not in str(info.value)
        assert log.next_seq == 0
    assert path.read_bytes() == b""


def test_forbidden_values_never_reach_the_log(tmp_path: Path, project: str) -> None:
    secret = bytes(range(32))
    path = tmp_path / "council.jsonl"
    with AuditLog(path, party="council", forbidden=secret_fingerprints(secret)) as log:
        for leak in (secret.hex(), secret.hex().upper()[:40] + secret.hex()[40:]):
            with pytest.raises(AuditError, match="forbidden") as info:
                log.append(
                    sender="council",
                    recipient="coordinator",
                    kind="x",
                    project=project,
                    detail={"oops": leak},
                )
            assert secret.hex() not in str(info.value)
        log.append(sender="council", recipient="coordinator", kind="x", project=project)
    assert secret.hex().encode() not in path.read_bytes()
    assert verify_log(path).ok


def test_refuses_to_continue_a_tampered_log(tmp_path: Path, project: str, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 4)
    path.write_bytes(path.read_bytes().replace(b'"records":20', b'"records":2', 1))
    before = path.read_bytes()
    with pytest.raises(AuditError, match=r"fails verification .*line 3 \(seq 2\).*edited"):
        AuditLog(path, party="council")
    assert path.read_bytes() == before


def test_a_line_torn_by_a_crash_is_cut_and_the_repair_logged(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 3)
    whole = path.read_bytes()
    torn = whole[:-30]
    path.write_bytes(torn)
    assert not verify_log(path).ok
    with AuditLog(path, party="council") as log:
        assert log.next_seq == 3  # the two whole entries, then the repair
    entries = read_entries(path)
    repair = entries[-1]
    assert [e.seq for e in entries] == [0, 1, 2]
    assert repair.kind == "audit:torn_line_repaired" and repair.detail == {"line": 3}
    fragment = torn[torn.rfind(b"\n") + 1 :]
    assert repair.bytes == len(fragment)
    assert repair.payload_sha256 == hashlib.sha256(fragment).hexdigest()
    assert repair.project == entries[0].project


def test_refuses_a_log_damaged_before_its_last_line(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 3)
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1][:-20]  # a garbled middle line is not a torn write: the DPO must look
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(AuditError, match="line 2: not valid JSON"):
        AuditLog(path, party="council")
    assert path.read_bytes() == b"\n".join(lines)  # nothing was cut


def test_a_write_that_fails_for_want_of_space_leaves_the_log_whole(
    tmp_path: Path, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "council.jsonl"
    log = AuditLog(path, party="council")
    log.append(sender="council", recipient="coordinator", kind="hello", project=project)
    size = path.stat().st_size
    real_write = os.write
    calls = {"n": 0}

    def full_disk(fd: int, data) -> int:  # half the line lands, then the disk is full
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    # The fault is the operating system's: the log's own code runs as it is.
    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(AuditError, match="No space left on device"):
        log.append(sender="council", recipient="coordinator", kind="hello", project=project)
    monkeypatch.setattr(os, "write", real_write)
    assert path.stat().st_size == size and verify_log(path).ok
    # Once there is space again, the log carries on where it was.
    log.append(sender="council", recipient="coordinator", kind="hello", project=project)
    log.close()
    assert [e.seq for e in read_entries(path)] == [0, 1]


def test_refuses_another_partys_log(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 2)
    with pytest.raises(AuditError, match="belongs to 'council', not 'police'"):
        AuditLog(path, party="police")
    with pytest.raises(AuditError, match="not a valid name"):
        AuditLog(tmp_path / "x.jsonl", party="Police Force")


def test_one_writer_at_a_time(tmp_path: Path, project: str) -> None:
    path = tmp_path / "council.jsonl"
    first = AuditLog(path, party="council")
    with pytest.raises(AuditError, match="already open for writing"):
        AuditLog(path, party="council")
    first.append(sender="council", recipient="coordinator", kind="x", project=project)
    first.close()
    with AuditLog(path, party="council") as second:
        assert second.next_seq == 1


def test_closed_log_refuses_appends(tmp_path: Path, project: str) -> None:
    log = AuditLog(tmp_path / "council.jsonl", party="council")
    log.close()
    log.close()  # idempotent
    with pytest.raises(AuditError, match="is closed"):
        log.append(sender="council", recipient="coordinator", kind="x", project=project)


def test_concurrent_appends_from_threads_form_one_valid_chain(tmp_path: Path, project: str) -> None:
    path = tmp_path / "coordinator.jsonl"
    threads_n, per_thread = 8, 25
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    with AuditLog(path, party="coordinator") as log:

        def worker(t: int) -> None:
            try:
                barrier.wait()
                for i in range(per_thread):
                    log.append(
                        sender=f"partner{t}",
                        recipient="coordinator",
                        kind="clk_chunk",
                        project=project,
                        payload=f"{t}-{i}".encode(),
                        detail={"thread": t, "i": i},
                    )
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    report = verify_log(path)
    assert report.ok, report.problems
    assert report.entries == threads_n * per_thread
    entries = read_entries(path)
    assert [e.seq for e in entries] == list(range(threads_n * per_thread))
    seen = {(e.detail["thread"], e.detail["i"]) for e in entries}
    assert len(seen) == threads_n * per_thread
