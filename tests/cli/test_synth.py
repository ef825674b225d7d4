"""`oda-fed synth`: the files it writes, and its arguments checked before any work."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from oda_fed.cli import app

runner = CliRunner(env={"COLUMNS": "200"})


def test_synth_writes_partners_truth_and_project(tmp_path: Path) -> None:
    args = ["synth", "--population", "40", "--partners", "2", "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--seed", "3", "--errors", "low"])
    assert result.exit_code == 0, result.output
    written = ["council.csv", "police.csv", "truth.csv", "project.toml"]
    assert [line.rsplit("/", 1)[-1] for line in result.output.splitlines()] == written
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)


def test_a_bad_error_level_or_partner_count_is_a_configuration_error(tmp_path: Path) -> None:
    base = ["synth", "--population", "40", "--out", str(tmp_path)]
    level = runner.invoke(app, [*base, "--partners", "2", "--errors", "extreme"])
    assert level.exit_code == 2 and "low, medium, high" in level.output
    partners = runner.invoke(app, [*base, "--partners", "9"])
    assert partners.exit_code == 2 and "partners must be" in partners.output
    assert not any(tmp_path.iterdir())
