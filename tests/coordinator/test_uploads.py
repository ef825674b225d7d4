"""Checks of a CLK chunk's record keys, and where a project's linked index lives."""

from __future__ import annotations

import doctest
from pathlib import Path

from oda_fed.coordinator import state
from oda_fed.coordinator.state import index_path_for
from oda_fed.coordinator.uploads import record_key_problem
from oda_fed.transport.messages import ClkChunk


def chunk(records: int, keys: list[bytes]) -> ClkChunk:
    return ClkChunk(
        round_id="r1",
        project_fingerprint="",
        chunk_index=2,
        total_chunks=3,
        first_ref=0,
        records=records,
        total_records=records,
        clk_bits=64,
        clks=b"",
        record_keys=tuple(keys),
    )


def test_an_opted_in_project_needs_one_distinct_32_byte_key_per_record() -> None:
    good = chunk(3, [b"\1" * 32, b"\2" * 32, b"\3" * 32])
    assert record_key_problem(good, stable=True) == ""
    assert "carries 0 for 3 CLKs" in record_key_problem(chunk(3, []), stable=True)
    assert "carries 4 for 3 CLKs" in record_key_problem(chunk(3, [b"\1" * 32] * 4), stable=True)
    short = chunk(2, [b"\1" * 32, b"\2" * 16])
    assert "32-byte" in record_key_problem(short, stable=True)
    assert "repeats a record key" in record_key_problem(chunk(2, [b"\1" * 32] * 2), stable=True)


def test_a_project_that_does_not_opt_in_refuses_any_record_key() -> None:
    assert record_key_problem(chunk(3, []), stable=False) == ""
    problem = record_key_problem(chunk(1, [b"\1" * 32]), stable=False)
    assert "does not set stable_entity_ids" in problem


def test_audit_detail_says_when_record_keys_crossed() -> None:
    assert chunk(1, []).audit_detail() == {"chunk": 2, "of": 3}
    assert chunk(1, [b"\1" * 32]).audit_detail() == {"chunk": 2, "of": 3, "record_keys": True}


def test_one_index_file_per_signed_project() -> None:
    a = index_path_for(Path("state"), "sha256:" + "a" * 64)
    b = index_path_for(Path("state"), "sha256:" + "b" * 64)
    assert a.parent == Path("state") and a != b
    assert doctest.testmod(state).failed == 0
