"""A failed write leaves the earlier file whole and no scratch file behind."""

from pathlib import Path

import pytest

from oda_fed.durable import write_atomic


def test_write_replaces_the_file(tmp_path: Path) -> None:
    out = tmp_path / "links.csv"
    out.write_text("old\n")
    write_atomic(out, lambda tmp: tmp.write_text("new\n"))
    assert out.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["links.csv"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "links.csv"
    out.write_text("old\n")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(out, half_then_fail)
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["links.csv"]
