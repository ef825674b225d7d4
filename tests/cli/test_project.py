"""`oda-fed project fingerprint` and `project explain` on a written synthetic project."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from oda_fed.cli import app
from oda_fed.config import load_project
from oda_fed.synth import PROFILES, project_document

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    import tomli_w

    path = tmp_path / "project.toml"
    path.write_text(tomli_w.dumps(project_document(PROFILES[:2], threshold=0.8)))
    return path


def test_fingerprint_is_the_one_a_dpo_pins(project: Path) -> None:
    result = runner.invoke(app, ["project", "fingerprint", str(project)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == load_project(project).fingerprint


def test_a_broken_project_is_a_configuration_error(tmp_path: Path) -> None:
    broken = tmp_path / "project.toml"
    broken.write_text("version = 1\nname = \n")
    result = runner.invoke(app, ["project", "fingerprint", str(broken)])
    assert result.exit_code == 2 and result.output.startswith("error:")


def test_explain_shows_n_grams_only_where_they_shape_the_tokens(project: Path) -> None:
    result = runner.invoke(app, ["project", "explain", str(project)])
    assert result.exit_code == 0, result.output
    cells = {
        row[0]: row[2]
        for line in result.output.splitlines()
        if line.startswith("│") and len(row := [c.strip() for c in line.split("│")[1:-1]]) > 2
    }
    assert cells == {
        "first_name": "2",
        "last_name": "2",
        "date_of_birth": "-",
        "sex": "-",
        "postcode": "2",
    }
    assert "expected fill" in result.output and "threshold 0.8" in result.output


def test_explain_with_a_sample_needs_the_secret(project: Path, tmp_path: Path) -> None:
    sample = tmp_path / "council.csv"
    sample.write_text("record_id\n")
    result = runner.invoke(app, ["project", "explain", str(project), "--sample", str(sample)])
    assert result.exit_code == 2 and "--sample needs --secret-file" in result.output
