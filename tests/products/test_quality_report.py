"""The quality report: two PNGs and a self-contained, escaped HTML page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oda_fed.matching.quality import estimate_quality
from oda_fed.products.charts import PNG_SIGNATURE
from oda_fed.products.quality_report import write_quality_report


@pytest.fixture
def scores() -> np.ndarray:
    rng = np.random.default_rng(20240611)
    return np.concatenate([0.5 + 0.25 * rng.beta(2, 8, 400), 0.8 + 0.2 * rng.beta(6, 1, 300)])


def test_writes_charts_and_a_self_contained_page(tmp_path: Path, scores: np.ndarray) -> None:
    est = estimate_quality(scores)
    paths = write_quality_report(
        out_dir=tmp_path / "q",
        title="Round <1> & co",
        scores=scores,
        estimate=est,
        chosen_threshold=0.8,
        block_stats={"candidate pairs": 12345, "blocks": 7},
        entities_by_partner_count={2: 300, 1: 800},
        truth={
            "precision": 0.99,
            "recall": 0.97,
            "f1": 0.98,
            "thresholds": [0.7, 0.8],
            "true_precision": [0.9, 0.99],
            "true_recall": [0.99, 0.97],
        },
    )
    assert set(paths) == {"histogram", "curves", "html"}
    for key in ("histogram", "curves"):
        assert paths[key].read_bytes().startswith(PNG_SIGNATURE)
    html = paths["html"].read_text()
    assert "Round &lt;1&gt; &amp; co" in html and "Round <1>" not in html
    assert html.count("data:image/png;base64,") == 2
    assert "0.990" in html and "12,345" in html and "<th>True</th>" in html
    assert html.index("<td>1</td>") < html.index("<td>2</td>")
    assert f"{est.at(0.8)[0]:.3f}" in html
    assert "http" not in html.replace("http-equiv", "")


def test_degenerate_estimate_still_reports(tmp_path: Path) -> None:
    scores = np.array([], dtype=np.float64)
    paths = write_quality_report(
        out_dir=tmp_path,
        title="Empty round",
        scores=scores,
        estimate=estimate_quality(scores),
        chosen_threshold=0.8,
        block_stats=None,
        entities_by_partner_count={},
    )
    html = paths["html"].read_text()
    assert "No estimate: only 0 scores" in html and "not estimated" in html
    assert "<th>True</th>" not in html and "How the partners were compared" not in html
