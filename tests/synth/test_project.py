"""The synthetic project agreement: what the demo signs, and what `oda-fed synth` writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

from oda_fed.config import load_project
from oda_fed.errors import OdaFedError
from oda_fed.synth import PROFILES, error_level, generate, project_document, write, write_project
from oda_fed.synth.project import (
    ALERT_ID,
    CROSSTAB_ID,
    LIST_ID,
    LOCAL_ID,
    PRODUCT_ID,
    RATE_ID,
)


def test_the_demo_document_leaves_the_column_layouts_to_the_nodes() -> None:
    doc = project_document(PROFILES[:3], threshold=0.8)
    assert [p["id"] for p in doc["partners"]] == ["council", "police", "social_care"]
    assert all(set(p) == {"id", "name"} for p in doc["partners"])
    assert doc["linkage"]["threshold"] == 0.8
    assert doc["products"][0]["area"] == {"partner": "council", "attribute": "ward"}
    assert doc["products"][0]["recipients"][-1] == "coordinator"


def test_the_analysis_declares_event_attributes_and_each_kind_of_product(tmp_path: Path) -> None:
    path = tmp_path / "project.toml"
    path.write_text(tomli_w.dumps(project_document(PROFILES[:3], analysis=True)))
    project = load_project(path).project
    assert project.linkage.stable_entity_ids  # the alert follows entities across rounds
    kinds = {p.id: p.kind for p in project.products}
    assert kinds == {
        PRODUCT_ID: "partner_count_by_area",
        CROSSTAB_ID: "count",
        RATE_ID: "rate",
        LIST_ID: "list",
        ALERT_ID: "alert",
        LOCAL_ID: "local",
    }
    assert len(project.product(CROSSTAB_ID).dimensions) == 2
    assert project.product(LIST_ID).recipients == ["council"]
    assert project.product(ALERT_ID).recipients == ["social_care"]
    events = {a.name: a.events for a in project.attributes if a.events}
    assert events == {
        "incidents_12m": "incidents",
        "domestic_abuse_90d": "incidents",
        "referred_12m": "referrals",
        "housing_complaint": "complaints",
    }
    # Without the analysis, the agreement is what it was.
    assert "stable_entity_ids" not in project_document(PROFILES[:3])["linkage"]
    with pytest.raises(OdaFedError, match="social_care"):
        project_document(PROFILES[:2], analysis=True)


def test_the_written_project_names_columns_each_partner_file_has(tmp_path: Path) -> None:
    synthetic = generate(population=60, partners=4, seed=3)
    write(synthetic, tmp_path)
    loaded = load_project(write_project(synthetic, tmp_path / "project.toml"))
    assert loaded.project.linkage.threshold == "auto"
    fields = [f.name for f in loaded.project.linkage.fields]
    for profile in synthetic.profiles:
        header = set(pd.read_csv(tmp_path / f"{profile.id}.csv", nrows=0).columns)
        source = loaded.project.partner(profile.id).source
        assert source.record_id in header
        assert set(source.columns) == set(fields) & set(profile.columns)
        assert set(source.columns.values()) <= header
        assert set(source.attributes.values()) <= header
        assert source.date_format == profile.date_format


def test_error_level_takes_the_three_levels_and_names_them_otherwise() -> None:
    assert [error_level(v) for v in ("low", "medium", "high")] == ["low", "medium", "high"]
    with pytest.raises(OdaFedError, match="low, medium, high") as caught:
        error_level("extreme")
    assert caught.value.exit_code == 2


def test_synth_imports_nothing_of_oda_fed_but_errors() -> None:
    """The one-way package graph: synth stands alone, so config can never depend on it by accident."""
    code = (
        "import sys, oda_fed.synth; "
        "print(sorted(m for m in sys.modules if m.startswith('oda_fed.') "
        "and not m.startswith('oda_fed.synth')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['oda_fed.errors']"
