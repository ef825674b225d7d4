"""`oda-fed encode` and `link`: arguments that contradict each other stop before any work.

Encoding and linking real files through the command line is in tests/test_embedded.py, the
linked index in tests/index/test_cli.py, clkhash bit-identity in tests/encoding.
"""

from __future__ import annotations

import json
import subprocess
import sys
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


# Loaded by other commands, never by encoding with a clkhash schema: the network, charts, X.509,
# spreadsheets, and the project's models (pydantic classes and what they import).
NOT_FOR_CLKHASH = (
    "grpc",
    "matplotlib",
    "cryptography.x509",
    "openpyxl",
    "oda_fed.config",
    "oda_fed.transport",
    "oda_fed.audit",
)


def test_encoding_with_a_clkhash_schema_loads_only_what_it_needs(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(
        "rec_id,given_name,surname,street_number,address_1,address_2,suburb,postcode,state,"
        "date_of_birth,soc_sec_id\n"
        "rec-0,karen,collins,4,moss side lane,,leeds,1000,wy,19680122,2443811\n"
        "rec-1,stephanie,foster,8,canal road,flat 2,leeds,8919,wy,19850504,1462601\n"
    )
    schema = Path(__file__).resolve().parents[2] / "docs/examples/febrl-clkhash-schema.json"
    arguments = ["encode", "--clkhash-schema", str(schema), "--secret", "s"]
    arguments += ["--input", "in.csv", "--out", "out.json"]
    code = (
        "import sys\nfrom oda_fed.cli import app\n"
        f"app({arguments!r}, standalone_mode=False)\n"
        f"print(sorted(m for m in {NOT_FOR_CLKHASH!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert len(json.loads((tmp_path / "out.json").read_text())["clks"]) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dask", "10.0.0.5:8786"], "is not a Dask scheduler"),
        (["--dask", "local", "--index", "x.index"], "--dask links afresh"),
    ],
)
def test_link_refuses_a_dask_option_it_cannot_use(
    folder: Path, extra: list[str], message: str
) -> None:
    args = ["link", str(folder / "in.csv"), str(folder / "in.csv"), "--project",
            str(folder / "project.toml"), "--secret-file", str(folder / "k"), *extra]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_link_help_says_how_to_match_on_a_dask_cluster() -> None:
    result = runner.invoke(app, ["link", "--help"])
    assert "--dask" in result.output and "local[:N]" in result.output
