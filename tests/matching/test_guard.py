"""The degenerate-fit guard, attacked: a partner that encodes with another secret, and a run
whose scores show no split, are reported as untrustworthy, never quietly linked."""

from __future__ import annotations

from pathlib import Path

import pytest

from oda_fed.config import load_project
from oda_fed.embedded import encode_files
from oda_fed.linkage import run_linkage, settings_for
from oda_fed.matching.guard import fit_problems, weak_pairs

SECRET = b"a shared secret of 32 bytes long"
WRONG = b"another secret, 32 bytes long..."


@pytest.fixture(scope="module")
def folder(tmp_path_factory, synth_folder) -> Path:
    folder = tmp_path_factory.mktemp("guard")
    return synth_folder(folder, population=600, partners=3, seed=5, errors="medium")


def _link(folder: Path, method: str, *, wrong: str | None = None):
    text = (folder / "project.toml").read_text()
    path = folder / f"project-{method}.toml"
    path.write_text(text.replace("[linkage]", f'[linkage]\nmethod = "{method}"', 1))
    project = load_project(path)
    extracts = {}
    for csv in sorted(p for p in folder.glob("*.csv") if p.stem != "truth"):
        secret = WRONG if csv.stem == wrong else SECRET
        extracts |= encode_files([csv], project=project, secret=secret, on_invalid="missing")
    return run_linkage(extracts, settings=settings_for(project.project.linkage))


@pytest.mark.parametrize("method", ["clk", "fields"])
def test_an_honest_linkage_is_not_called_degenerate(folder: Path, method: str) -> None:
    result = _link(folder, method)
    assert result.degenerate() == []
    assert "DEGENERATE" not in result.summary()


@pytest.mark.parametrize("method", ["clk", "fields"])
def test_a_partner_with_another_secret_is_found_out(
    folder: Path, method: str, tmp_path: Path
) -> None:
    """The attack (or mistake) of issue 11: one node's secret differs. Its records match no one's;
    linkage still runs, so the guard must say that its entities are not to be trusted."""
    result = _link(folder, method, wrong="police")
    reasons = result.degenerate()
    weak = [r for r in reasons if "share" in r]
    # Exactly the pairs with the police: the other pair is as linked as ever.
    assert len(weak) == 2 and all("'police'" in r for r in weak), reasons
    assert "another linkage secret" in weak[0]
    assert "DEGENERATE FIT" in result.summary()
    page = result.write_quality_report(tmp_path, title="guard")["html"].read_text()
    assert 'id="degenerate"' in page and "police" in page


def test_fit_problems_name_a_threshold_at_its_floor_and_no_separation() -> None:
    floor = fit_problems(threshold=0.5, auto_floor=0.5, precision=0.62, reason=None)
    assert len(floor) == 2 and "floor" in floor[0] and "0.62" in floor[1]
    assert fit_problems(threshold=0.5, auto_floor=None, precision=0.95, reason=None) == []
    assert (
        "no quality estimate"
        in fit_problems(
            threshold=0.8, auto_floor=None, precision=float("nan"), reason="too few scores"
        )[0]
    )


def test_small_sources_and_real_overlaps_are_not_weak_pairs() -> None:
    import numpy as np

    big, other = np.arange(1000), np.arange(990, 1990)
    # 10 shared of 1,000 is 1%: at the line, not below it; 9 would be.
    assert weak_pairs([big, other], ["a", "b"]) == []
    assert len(weak_pairs([big, np.arange(991, 1991)], ["a", "b"])) == 1
    # Under 50 records a pair says too little to call it weak.
    assert weak_pairs([np.arange(40), np.arange(100, 140)], ["a", "b"]) == []
