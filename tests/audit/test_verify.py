"""Verifying logs as attacks on them: each tampering is found and named by line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.audit import (
    AuditLog,
    canonical_json,
    cross_check,
    leaf_hash,
    read_entries,
    verify_dir,
    verify_log,
)
from oda_fed.errors import AuditError


def _rewrite(path: Path, edit) -> None:
    lines = path.read_bytes().split(b"\n")[:-1]
    path.write_bytes(b"".join(line + b"\n" for line in edit(lines)))


def _rehash(line: bytes, **changes: object) -> bytes:
    """Edit an entry and recompute its hash, as an attacker who knows the format would."""
    obj = {**json.loads(line), **changes}
    obj["hash"] = leaf_hash(obj)
    return canonical_json(obj)


def test_a_clean_log_verifies(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 5)
    report = verify_log(path)
    assert (report.ok, report.entries, report.party, report.problems) == (True, 5, "council", [])
    assert report.head == json.loads(path.read_bytes().splitlines()[-1])["hash"]


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    (tmp_path / "new.jsonl").write_bytes(b"")
    report = verify_log(tmp_path / "new.jsonl")
    assert (report.ok, report.entries, report.party, report.head) == (True, 0, None, None)


def test_edited_field_is_found_and_named(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 8)
    path.write_bytes(path.read_bytes().replace(b'"records":60', b'"records":6', 1))
    report = verify_log(path)
    assert not report.ok
    assert report.problems == [
        "line 7 (seq 6): entry hash does not match its contents — the entry was edited"
    ]


def test_edited_and_rehashed_entry_breaks_the_next_link(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 5)
    _rewrite(path, lambda ls: [*ls[:2], _rehash(ls[2], records=0), *ls[3:]])
    problems = verify_log(path).problems
    assert len(problems) == 1
    assert problems[0].startswith(
        "line 4 (seq 3): prev does not match the hash of the entry before"
    )


def test_deleted_middle_entry_is_found(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 5)
    _rewrite(path, lambda ls: [*ls[:2], *ls[3:]])
    assert verify_log(path).problems == [
        "line 3 (seq 3): expected seq 2; seq 2 is missing — entries were deleted or moved"
    ]


def test_deleted_and_renumbered_entries_are_found(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 5)

    def delete_and_renumber(lines: list[bytes]) -> list[bytes]:
        # Delete seq 2, renumber the rest and re-link them to each other, but not to seq 1.
        third = _rehash(lines[3], seq=2)
        fourth = _rehash(lines[4], seq=3, prev=json.loads(third)["hash"])
        return [*lines[:2], third, fourth]

    _rewrite(path, delete_and_renumber)
    assert verify_log(path).problems == [
        "line 3 (seq 2): prev does not match the hash of the entry before it — an entry before "
        "it was edited, deleted, inserted or moved"
    ]


def test_a_full_rewrite_passes_the_chain_but_not_cross_check(tmp_path: Path, project: str) -> None:
    # Whoever controls a log file can rebuild a consistent chain without an entry; only the
    # other side's log (and, later, signed checkpoints) can show what is gone.
    council, coordinator = tmp_path / "council.jsonl", tmp_path / "coordinator.jsonl"
    with AuditLog(council, party="council") as c, AuditLog(coordinator, party="coordinator") as k:
        for i in range(3):
            for log in (c, k):
                log.append(
                    sender="council",
                    recipient="coordinator",
                    kind="clk_chunk",
                    project=project,
                    payload=bytes([i]),
                )

    def rebuild_without_seq_1(lines: list[bytes]) -> list[bytes]:
        first = lines[0]
        third = _rehash(lines[2], seq=1, prev=json.loads(first)["hash"])
        return [first, third]

    _rewrite(council, rebuild_without_seq_1)
    assert verify_log(council).ok
    problems = cross_check([council, coordinator])
    assert len(problems) == 1
    assert problems[0].startswith(f"{coordinator} line 2 (seq 1): clk_chunk council → coordinator")


def test_deleted_first_entries_are_found(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 5)
    _rewrite(path, lambda ls: ls[2:])
    assert verify_log(path).problems == [
        "line 1 (seq 2): expected seq 0; seqs 0-1 are missing — entries were deleted or moved"
    ]


def test_swapped_lines_are_found(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 5)
    _rewrite(path, lambda ls: [ls[0], ls[2], ls[1], *ls[3:]])
    problems = verify_log(path).problems
    assert problems[0].startswith("line 2 (seq 2): expected seq 1")
    assert problems[1].startswith(
        "line 3 (seq 1): seq goes back (expected 3) — entries were reordered"
    )
    assert len(problems) == 2


def test_duplicated_line_is_found(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 3)
    _rewrite(path, lambda ls: [ls[0], ls[1], ls[1], ls[2]])
    assert verify_log(path).problems[0].startswith("line 3 (seq 1): seq goes back")


def test_truncated_last_line_is_found(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 3)
    path.write_bytes(path.read_bytes()[:-40])
    assert verify_log(path).problems == [
        "line 3: not valid JSON — the line is truncated or incomplete: the last write was cut off"
    ]


def test_missing_final_newline_is_found(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 3)
    path.write_bytes(path.read_bytes()[:-1])
    assert verify_log(path).problems == [
        "line 3 (seq 2): no newline at the end — the last write was cut off"
    ]


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        (b'{"v":1,"seq":', "line 3: not valid JSON — the line is truncated or garbled"),
        (b"\xff\xfe\x00garbage", "line 3: not valid JSON"),
        (b"[1, 2, 3]", "line 3: not a JSON object"),
        (b'{"v":1,"seq":NaN}', "line 3: not valid JSON"),
        (b"[" * 100_000, "line 3: not valid JSON"),
    ],
)
def test_garbled_middle_line_is_found(
    tmp_path: Path, write_log, garbage: bytes, message: str
) -> None:
    path = write_log(tmp_path / "council.jsonl", 5)
    _rewrite(path, lambda ls: [*ls[:2], garbage, *ls[3:]])
    report = verify_log(path)
    assert not report.ok
    assert report.problems[0].startswith(message)
    # The lines after it still verify on their own; only the lost line is reported.
    assert len(report.problems) == 1


def test_blank_line_in_place_of_an_entry_is_found(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 4)
    _rewrite(path, lambda ls: [*ls[:2], b"", *ls[3:]])
    assert verify_log(path).problems == [
        "line 3: blank line — the file was edited",
        "line 4 (seq 3): expected seq 2; seq 2 is missing — entries were deleted or moved",
    ]


def test_unknown_version_is_reported(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 3)
    _rewrite(path, lambda ls: [*ls[:2], _rehash(ls[2], v=2, merkle="future")])
    assert verify_log(path).problems == [
        "line 3 (seq 2): unknown format version '2' — this verifier reads version 1; use the "
        "oda-fed release that wrote the log"
    ]


def test_rewritten_but_equivalent_line_is_reported(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 3)
    pretty = json.dumps(json.loads(path.read_bytes().splitlines()[1]), indent=None).encode()
    _rewrite(path, lambda ls: [ls[0], pretty, ls[2]])
    assert verify_log(path).problems == [
        "line 2 (seq 1): not in canonical form (key order, spacing or number format changed) — "
        "the line was rewritten"
    ]


def test_entries_from_another_log_are_reported(tmp_path: Path, write_log) -> None:
    ours = write_log(tmp_path / "council.jsonl", 3)
    theirs = write_log(tmp_path / "police.jsonl", 3, party="police")
    foreign = theirs.read_bytes().splitlines()[2]
    _rewrite(ours, lambda ls: [*ls, foreign])
    problems = verify_log(ours).problems
    assert problems[0] == (
        "line 4 (seq 2): written by 'police', but earlier entries by 'council' — entries from "
        "another log were mixed in"
    )


def test_unreadable_log_gives_a_failed_report(tmp_path: Path) -> None:
    report = verify_log(tmp_path / "missing.jsonl")
    assert not report.ok and "cannot read the log" in report.problems[0]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_single_byte_change_is_detected(tmp_path_factory, write_log, data) -> None:
    path = tmp_path_factory.mktemp("flip") / "council.jsonl"
    write_log(path, 4)
    original = path.read_bytes()
    index = data.draw(st.integers(0, len(original) - 1), label="index")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != original[index]), label="byte")
    path.write_bytes(original[:index] + bytes([new]) + original[index + 1 :])
    assert not verify_log(path).ok


def test_cutting_the_tail_is_caught_by_cross_check_not_by_the_chain(
    tmp_path: Path, project: str
) -> None:
    # A hash chain cannot see entries removed from its end; the other side's log can.
    council, coordinator = tmp_path / "council.jsonl", tmp_path / "coordinator.jsonl"
    with (
        AuditLog(council, party="council") as a,
        AuditLog(coordinator, party="coordinator") as b,
    ):
        for i in range(3):
            for log in (a, b):
                log.append(
                    sender="council",
                    recipient="coordinator",
                    kind="clk_chunk",
                    project=project,
                    payload=bytes([i]),
                    round_id="r1",
                )
    _rewrite(council, lambda ls: ls[:2])
    assert verify_log(council).ok
    problems = cross_check([council, coordinator])
    assert len(problems) == 1
    assert problems[0].startswith(f"{coordinator} line 3 (seq 2): clk_chunk council → coordinator")
    assert problems[0].endswith("is in coordinator's log but missing from council's log")


def _pair(tmp_path: Path, project: str) -> tuple[Path, Path]:
    council = tmp_path / "nodes" / "council" / "audit.jsonl"
    coordinator = tmp_path / "coordinator" / "audit.jsonl"
    with (
        AuditLog(council, party="council") as c,
        AuditLog(coordinator, party="coordinator") as k,
    ):
        for log in (c, k):
            log.append(
                sender="council",
                recipient="coordinator",
                kind="clk_chunk",
                project=project,
                payload=b"chunk",
                records=2,
                round_id="r1",
            )
        # The coordinator logs an instruction the council never logged receiving.
        k.append(
            sender="coordinator",
            recipient="council",
            kind="instruction:encode",
            project=project,
            payload=b"encode please",
            round_id="r1",
        )
        c.append(
            sender="coordinator",
            recipient="council",
            kind="entity_chunk",
            project=project,
            payload=b"ids",
            round_id="r1",
        )
    return council, coordinator


def test_cross_check_finds_crossings_missing_from_either_side(tmp_path: Path, project: str) -> None:
    council, coordinator = _pair(tmp_path, project)
    problems = cross_check(verify_dir(tmp_path))
    encode = hashlib.sha256(b"encode please").hexdigest()[:16]
    ids = hashlib.sha256(b"ids").hexdigest()[:16]
    assert problems == [
        f"{coordinator} line 2 (seq 1): instruction:encode coordinator → council, round r1, "
        f"payload {encode}… is in coordinator's log but missing from council's log",
        f"{council} line 2 (seq 1): entity_chunk coordinator → council, round r1, "
        f"payload {ids}… is in council's log but missing from coordinator's log",
    ]


def test_cross_check_of_agreeing_logs_is_empty(tmp_path: Path, project: str) -> None:
    council = tmp_path / "council.jsonl"
    coordinator = tmp_path / "coordinator.jsonl"
    with AuditLog(council, party="council") as c, AuditLog(coordinator, party="coordinator") as k:
        for i in range(3):
            for log in (k, c):  # logged in a different order on each side
                log.append(
                    sender="coordinator",
                    recipient="council",
                    kind="entity_chunk",
                    project=project,
                    payload=b"same",  # the same payload three times: counted, not just matched
                    round_id=f"r{i % 2}",
                )
    assert cross_check([council, coordinator]) == []
    # Giving a log twice (a copy in another folder) does not double-count it.
    copy = tmp_path / "copy" / "council.jsonl"
    copy.parent.mkdir()
    copy.write_bytes(council.read_bytes())
    assert cross_check([council, copy, coordinator]) == []
    # With only one side present there is nothing to compare.
    assert cross_check([council]) == []


def test_cross_check_counts_repeated_crossings(tmp_path: Path, project: str) -> None:
    council, coordinator = tmp_path / "council.jsonl", tmp_path / "coordinator.jsonl"
    args = {"sender": "council", "recipient": "coordinator", "kind": "hello", "project": project}
    with AuditLog(council, party="council") as c, AuditLog(coordinator, party="coordinator") as k:
        c.append(**args)
        c.append(**args)
        k.append(**args)
    problems = cross_check([council, coordinator])
    assert len(problems) == 1 and problems[0].startswith(f"{council} line 2 (seq 1): hello")


def test_verify_dir_is_recursive_and_sorted(tmp_path: Path, write_log) -> None:
    write_log(tmp_path / "b" / "deep" / "police.jsonl", 2, party="police")
    write_log(tmp_path / "a.jsonl", 2)
    (tmp_path / "notes.txt").write_text("not a log")
    reports = verify_dir(tmp_path)
    assert [r.path for r in reports] == [tmp_path / "a.jsonl", tmp_path / "b/deep/police.jsonl"]
    assert all(r.ok for r in reports)
    assert verify_dir(tmp_path / "b" / "deep")[0].party == "police"
    with pytest.raises(AuditError, match="is not a folder"):
        verify_dir(tmp_path / "a.jsonl")


def test_read_entries_refuses_a_tampered_log(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 3)
    assert [e.records for e in read_entries(path)] == [0, 10, 20]
    path.write_bytes(path.read_bytes().replace(b'"records":10', b'"records":1', 1))
    with pytest.raises(AuditError, match=r"line 2 \(seq 1\): entry hash"):
        read_entries(path)
