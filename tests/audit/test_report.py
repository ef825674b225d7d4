"""summarise_dir: what crossed, per direction and kind, beside each log's verification."""

from __future__ import annotations

from pathlib import Path

import pytest

from oda_fed.audit import CrossingTotal, read_entries, summarise_dir
from oda_fed.errors import AuditError


def test_crossings_are_totalled_per_sender_recipient_and_kind(tmp_path: Path, write_log) -> None:
    path = write_log(tmp_path / "council.jsonl", 5)  # council sends 0, 2, 4; receives 1, 3
    (summary,) = summarise_dir(tmp_path)
    assert summary.log.ok and summary.log.path == path
    size = {e.seq: e.bytes for e in read_entries(path)}
    assert summary.crossings == [
        CrossingTotal(
            "coordinator", "council", "instruction:encode", 2, 10 + 30, size[1] + size[3]
        ),
        CrossingTotal(
            "council", "coordinator", "clk_chunk", 3, 0 + 20 + 40, size[0] + size[2] + size[4]
        ),
    ]


def test_a_failed_log_is_marked_and_still_totalled(tmp_path: Path, write_log) -> None:
    write_log(tmp_path / "a" / "council.jsonl", 4)
    bad = write_log(tmp_path / "b" / "police.jsonl", 4, party="police")
    bad.write_bytes(bad.read_bytes().replace(b'"records":20', b'"records":2', 1))
    first, second = summarise_dir(tmp_path)
    assert first.log.ok and not second.log.ok
    assert [c.records for c in second.crossings] == [10 + 30, 0 + 2]  # what the log claims


def test_a_missing_folder_is_an_audit_error(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="not a folder"):
        summarise_dir(tmp_path / "nowhere")
