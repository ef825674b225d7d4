"""The root of `oda-fed`: every group is listed, and listing them loads none of the library."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from oda_fed import __version__
from oda_fed.cli import app

HEAVY = ("numba", "pandas", "numpy", "matplotlib", "grpc", "pyarrow", "pydantic", "cryptography")
COMMANDS = ("demo", "synth", "encode", "link", "pki", "coordinator", "node", "audit", "project")


def test_importing_the_cli_loads_no_heavy_package() -> None:
    code = f"import sys, oda_fed.cli; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_command_and_group() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oda_fed", "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    listed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert listed >= {*COMMANDS, "index"}, result.stdout


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.output.strip()) == (0, f"oda-fed {__version__}")
