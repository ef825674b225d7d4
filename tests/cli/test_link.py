"""`oda-fed encode` and `link`: arguments that contradict each other stop before any work.

Encoding and linking real files through the command line is in tests/test_embedded.py, the
linked index in tests/index/test_cli.py, clkhash bit-identity in tests/encoding.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from oda_fed.cli import app

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in.csv").write_text("record_id\n1\n")
    (tmp_path / "k").write_text("00" * 32)
    (tmp_path / "project.toml").write_text("")
    (tmp_path / "schema.json").write_text("{}")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give either --project or --clkhash-schema"),
        (["--project", "project.toml", "--clkhash-schema", "schema.json"], "give either"),
        (["--project", "project.toml"], "give either --secret-file or --secret"),
        (["--project", "project.toml", "--secret", "s"], "--secret is for clkhash schemas"),
        (["--project", "project.toml", "--secret-file", "k", "--format", "csv"], "--format"),
        (
            ["--project", "project.toml", "--secret-file", "k", "--format", "clkhash-json"],
            "clkhash-json output is for --clkhash-schema",
        ),
        (
            ["--project", "project.toml", "--secret-file", "k", "--on-invalid", "skip"],
            "--on-invalid must be one of error, missing",
        ),
    ],
)
def test_encode_refuses_contradictory_arguments(
    folder: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(folder)
    result = runner.invoke(app, ["encode", "--input", "in.csv", "--out", "out.npy", *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") and message in result.output
    assert not (folder / "out.npy").exists()


def test_link_rebuild_needs_an_index(folder: Path) -> None:
    result = runner.invoke(
        app,
        [
            "link",
            str(folder / "in.csv"),
            "--project",
            str(folder / "project.toml"),
            "--secret-file",
            str(folder / "k"),
            "--rebuild-index",
        ],
    )
    assert result.exit_code == 2 and "--rebuild-index needs --index" in result.output
