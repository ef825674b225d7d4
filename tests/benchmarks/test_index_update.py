"""``benchmarks/index_update.py`` measures what it says: an update scores only the new records,
and both ways link a small region well under both methods."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "index_update.py"


@pytest.fixture(scope="module")
def index_update():
    sys.path.insert(0, str(_PATH.parent))
    spec = importlib.util.spec_from_file_location("index_update_benchmark", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_update_scores_only_the_new_records_and_links_like_a_full_link(
    index_update, tmp_path: Path
) -> None:
    rows = index_update.main(["--data", "synth", "--people", "400", "--workdir", str(tmp_path)])
    assert [(r["method"], r["way"]) for r in rows] == [
        ("fields", "update"), ("fields", "full link"), ("clk", "update"), ("clk", "full link")
    ]  # fmt: skip
    records = rows[0]["records"]
    for update, full in (rows[0:2], rows[2:4]):
        assert update["scored"] == pytest.approx(0.1 * records, abs=3)
        assert full["scored"] is None and full["F1"] > 0.9
        assert abs(update["F1"] - full["F1"]) < 0.03
