"""The index file: refused when it belongs to another project, checked extracts, ids, digests."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from oda_fed.errors import InputDataError, ProjectMismatchError, StateError
from oda_fed.index import Extract, LinkedIndex, describe_index
from oda_fed.index.extract import digests
from oda_fed.index.ids import carry_over, fresh_ids
from oda_fed.matching.settings import LinkSettings

FP = "sha256:" + "a" * 64
OTHER_FP = "sha256:" + "b" * 64


def small_index(path: Path, helpers: SimpleNamespace) -> None:
    council = Extract(
        record_ids=["c1", "c2"], clks=helpers.clks(helpers.clk((0, 40)), helpers.clk((50, 90)))
    )
    police = Extract(record_ids=["p1"], clks=helpers.clks(helpers.clk((0, 40))))
    with LinkedIndex.open(path, fingerprint=FP, words=2, create=True) as index:
        index.link({"council": council, "police": police}, settings=LinkSettings(threshold=0.8))


def test_an_index_of_another_project_is_refused_and_left_unchanged(
    tmp_path: Path, helpers: SimpleNamespace
) -> None:
    path = tmp_path / "links.index"
    small_index(path, helpers)
    raw = path.read_bytes()
    with pytest.raises(ProjectMismatchError, match="another|built under") as caught:
        LinkedIndex.open(path, fingerprint=OTHER_FP, words=2)
    assert FP in str(caught.value) and OTHER_FP in str(caught.value)
    assert caught.value.exit_code == 4
    with pytest.raises(ProjectMismatchError, match="128-bit CLKs, not 1024-bit"):
        LinkedIndex.open(path, fingerprint=FP, words=16)
    assert path.read_bytes() == raw
    assert sorted(p.name for p in tmp_path.iterdir()) == ["links.index"]  # no journal left


def test_extracts_of_another_width_are_refused(tmp_path: Path, helpers: SimpleNamespace) -> None:
    path = tmp_path / "links.index"
    small_index(path, helpers)
    wide = Extract(record_ids=["p9"], clks=np.zeros((1, 4), dtype=np.uint64))
    with LinkedIndex.open(path, fingerprint=FP, words=2) as index:
        with pytest.raises(ProjectMismatchError, match="256-bit CLKs"):
            index.link({"police": wide}, settings=LinkSettings(threshold=0.8))
        assert index.entity_ids("police").keys() == {"p1"}


def test_files_that_are_not_an_index_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="no linked index"):
        LinkedIndex.open(tmp_path / "missing.index", fingerprint=FP, words=2)
    assert not (tmp_path / "missing.index").exists()
    text = tmp_path / "notes.txt"
    text.write_text("not a database, and long enough to look like one is not. " * 20)
    with pytest.raises(InputDataError, match="not a SQLite file"):
        LinkedIndex.open(text, fingerprint=FP, words=2, create=True)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(InputDataError, match="not an oda-fed linked index"):
        LinkedIndex.open(other, fingerprint=FP, words=2, create=True)
    with pytest.raises(InputDataError, match="no linked index"):
        describe_index(tmp_path / "missing.index")


def test_describe_reads_without_the_project(tmp_path: Path, helpers: SimpleNamespace) -> None:
    path = tmp_path / "links.index"
    small_index(path, helpers)
    raw = path.read_bytes()
    summary = describe_index(path)
    assert summary.sources == (("council", 2, 1), ("police", 1, 1))
    assert (summary.entities, summary.linked_entities, summary.retired) == (2, 1, 0)
    assert summary.fingerprint == FP and summary.bits == 128 and summary.threshold == 0.8
    assert [action for _, action, _ in summary.history] == ["build"]
    assert path.read_bytes() == raw


def test_extracts_are_checked(helpers: SimpleNamespace) -> None:
    two = helpers.clks(helpers.clk((0, 4)), helpers.clk((4, 8)))
    with pytest.raises(InputDataError, match="record 2 repeats"):
        Extract(record_ids=["a", "a"], clks=two).normalised("council")
    with pytest.raises(InputDataError, match="3 record ids but 2 CLKs"):
        Extract(record_ids=["a", "b", "c"], clks=two).normalised("council")
    with pytest.raises(InputDataError, match="'nhs' has 1 entries for 2 records"):
        Extract(record_ids=["a", "b"], clks=two, tokens={"nhs": [b"x"]}).normalised("council")
    with pytest.raises(InputDataError, match="uint64"):
        Extract(record_ids=["a", "b"], clks=two.astype(np.int64)).normalised("council")


def test_digests_follow_the_clk_and_the_tokens(helpers: SimpleNamespace) -> None:
    one = helpers.clks(helpers.clk((0, 10)), helpers.clk((0, 10)))
    plain = digests(one, {})
    assert plain[0] == plain[1] and len(plain[0]) == 64
    flipped = one.copy()
    flipped[1, 0] ^= np.uint64(1)
    assert digests(flipped, {})[1] != plain[1]
    tokens = digests(one, {"nhs": ["ab", None]})
    assert tokens[0] != plain[0] and tokens[1] != plain[1] and tokens[0] != tokens[1]
    as_bytes = Extract(record_ids=["a", "b"], clks=one, tokens={"nhs": [b"\xab", None]})
    assert as_bytes.normalised("s").digests == tokens  # bytes and hex tokens are the same token


def test_fresh_ids_are_opaque_and_never_reissued() -> None:
    issued = {"e" + "0" * 16}
    ids = fresh_ids(500, issued=issued)
    assert len(set(ids)) == 500 and "e" + "0" * 16 not in ids
    assert all(len(e) == 17 and e.startswith("e") for e in ids)
    assert issued >= set(ids)
    assert fresh_ids(0, issued=issued) == []


def test_carry_over_prefers_the_largest_overlap_one_to_one() -> None:
    old = ["a", "a", "a", "b", "b", None, "c"]
    labels = np.array([0, 0, 1, 1, 1, 2, 3])
    # Cluster 1 overlaps b most (2) and a once; cluster 0 keeps a; c follows its only record.
    assert carry_over(old, labels) == {0: "a", 1: "b", 3: "c"}
    # One old entity split in two: the larger part keeps the id, the other gets a fresh one.
    assert carry_over(["a", "a", "a"], np.array([5, 5, 6])) == {5: "a"}
    # Two old entities merged: the merged cluster keeps the larger one's id.
    assert carry_over(["a", "b", "b"], np.array([0, 0, 0])) == {0: "b"}


CRASH = """
import os, sys
import numpy as np
from oda_fed.index import Extract, LinkedIndex
from oda_fed.matching.settings import LinkSettings

rng = np.random.default_rng(7)
clks = rng.integers(0, 2**63, size=(60, 2), dtype=np.uint64)

def die(message):
    if "matching" in message:
        os._exit(9)  # a crash: no exception handling, no rollback, no close

with LinkedIndex.open(sys.argv[1], fingerprint=sys.argv[2], words=2) as index:
    index.link(
        {"police": Extract(record_ids=[f"p{i}" for i in range(10, 60)], clks=clks[10:])},
        progress=die,
        settings=LinkSettings(threshold=0.8),
    )
"""


def test_a_crash_mid_update_leaves_the_index_as_before(tmp_path: Path) -> None:
    import subprocess
    import sys

    rng = np.random.default_rng(7)
    clks = rng.integers(0, 2**63, size=(60, 2), dtype=np.uint64)
    path = tmp_path / "links.index"
    with LinkedIndex.open(path, fingerprint=FP, words=2, create=True) as index:
        index.link(
            {
                "council": Extract(record_ids=[f"c{i}" for i in range(40)], clks=clks[:40].copy()),
                "police": Extract(record_ids=[f"p{i}" for i in range(40)], clks=clks[:40].copy()),
            },
            settings=LinkSettings(threshold=0.8),
        )
        before = index.links(include_singletons=True)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(path), FP], capture_output=True, text=True, timeout=60
    )
    assert crashed.returncode == 9, crashed.stderr
    with LinkedIndex.open(path, fingerprint=FP, words=2) as index:
        assert index.links(include_singletons=True).equals(before)
        assert describe_index(path).history[-1][1] == "build"
        # The next update goes through, and SQLite clears what the crash left behind.
        police = Extract(record_ids=[f"p{i}" for i in range(10, 60)], clks=clks[10:].copy())
        report = index.link({"police": police}, settings=LinkSettings(threshold=0.8))
        assert (report.sources[0].removed, report.sources[0].new) == (10, 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["links.index"]


def test_a_damaged_index_is_refused_with_what_to_do(
    tmp_path: Path, helpers: SimpleNamespace
) -> None:
    path = tmp_path / "links.index"
    small_index(path, helpers)
    page = 4096
    raw = bytearray(path.read_bytes())
    assert len(raw) >= 4 * page
    # Garbage over a page in the middle of the file, as a failing disk leaves it.
    middle = (len(raw) // page // 2) * page
    raw[middle : middle + page] = np.random.default_rng(3).bytes(page)
    path.write_bytes(bytes(raw))
    for opening in (lambda: LinkedIndex.open(path, fingerprint=FP, words=2),
                    lambda: describe_index(path)):  # fmt: skip
        with pytest.raises(StateError, match="linked index .* is damaged") as caught:
            opening()
        assert "Restore it from your latest backup" in str(caught.value)
        assert caught.value.exit_code == 8
