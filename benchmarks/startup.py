"""Start-up benchmark: how long `oda-fed` takes, as a whole process, to do almost nothing.

    .venv/bin/python benchmarks/startup.py [--runs 10] [--cold-runs 3]

It times fresh processes, wall clock from start to exit, of:

- ``python -c pass``: the floor, the interpreter alone;
- ``oda-fed --help``: the command line itself, which imports only typer, rich and its own
  modules (goal: under 0.3 s);
- ``oda-fed link --help``: the same, plus what typer loads to parse a subcommand's options
  (typer 0.29 coerced every parameter, ``--help`` included, through a pydantic TypeAdapter,
  which is why the project stays below it);
- ``oda-fed encode`` of a two-row CSV: the command line plus what encoding needs (pydantic for
  the project, pandas to read; no Numba below a million rows) and nothing else (no gRPC,
  matplotlib...).

The project, secret and CSV are written into a temporary folder with ``oda-fed synth`` and
``oda-fed pki secret``. Each command runs once unmeasured, so that bytecode and Numba's cache are
written (into a temporary ``PYTHONPYCACHEPREFIX``, whatever ``PYTHONDONTWRITEBYTECODE`` says), as
they are for an installed package; then ``--runs`` times, and the median and the minimum are
printed. ``--cold-runs`` more runs of ``oda-fed --help`` with no bytecode at all show what a first
start costs. The machines are shared and noisy: compare figures from one run. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

HELP_GOAL = 0.3  # seconds, whole process


def timed(command: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> float:
    """Wall-clock seconds of one run of ``command``; it must succeed."""
    started = time.perf_counter()
    subprocess.run(
        command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return time.perf_counter() - started


def oda_fed() -> list[str]:
    """The installed `oda-fed` script beside this interpreter, else ``python -m oda_fed``."""
    script = Path(sys.executable).with_name("oda-fed")
    return [str(script)] if script.exists() else [sys.executable, "-m", "oda_fed"]


def prepare(folder: Path, *, env: Mapping[str, str]) -> list[str]:
    """Write a project, a secret and a two-row CSV; return the encode command's arguments."""
    cli = oda_fed()
    synth = [*cli, "synth", "--population", "30", "--partners", "2", "--out", str(folder)]
    subprocess.run(synth, env=env, check=True, stdout=subprocess.DEVNULL)
    secret = folder / "linkage.secret"
    secret_command = [*cli, "pki", "secret", "--out", str(secret)]
    subprocess.run(secret_command, env=env, check=True, stdout=subprocess.DEVNULL)
    lines = (folder / "council.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "two_rows.csv").write_text("".join(lines[:3]), encoding="utf-8")
    return [
        "encode",
        "--project",
        str(folder / "project.toml"),
        "--secret-file",
        str(secret),
        "--input",
        str(folder / "two_rows.csv"),
        "--partner",
        "council",
        "--out",
        str(folder / "x.npy"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs of each command")
    parser.add_argument(
        "--cold-runs", type=int, default=3, help="runs of --help with no bytecode cache"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="oda-fed-startup-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"PYTHONPYCACHEPREFIX": str(root / "pycache"), "COLUMNS": "100"}
        encode = prepare(root / "data", env=env)
        cli = oda_fed()
        commands = [
            ("python -c pass", [sys.executable, "-c", "pass"], "the floor"),
            ("oda-fed --help", [*cli, "--help"], HELP_GOAL),
            ("oda-fed link --help", [*cli, "link", "--help"], "typer < 0.29: no pydantic"),
            ("oda-fed encode (2-row CSV, npy)", [*cli, *encode], "pandas, pydantic; no Numba"),
        ]
        print(
            f"whole-process wall time, {args.runs} fresh processes each after one warm-up "
            f"(bytecode and Numba cache written); {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}"
        )
        print(f"{'command':<34} {'median':>8} {'min':>8}  goal or note")
        for label, command, goal in commands:
            timed(command, env=env, cwd=root)  # warm-up: writes bytecode and Numba's cache
            times = [timed(command, env=env, cwd=root) for _ in range(args.runs)]
            median = statistics.median(times)
            if isinstance(goal, float):
                goal = f"goal < {goal:.1f} s: {'met' if median < goal else 'NOT met'}"
            print(f"{label:<34} {median:>7.3f}s {min(times):>7.3f}s  {goal}")

        if args.cold_runs:
            cold = []
            for i in range(args.cold_runs):
                # An empty cache each time, and nothing written: every module compiles from source.
                cold_env = env | {
                    "PYTHONPYCACHEPREFIX": str(root / f"cold-{i}"),
                    "PYTHONDONTWRITEBYTECODE": "1",
                }
                cold.append(timed([*cli, "--help"], env=cold_env, cwd=root))
            print(
                f"{'oda-fed --help, no bytecode':<34} {statistics.median(cold):>7.3f}s "
                f"{min(cold):>7.3f}s  (first start after install without compiled bytecode)"
            )


if __name__ == "__main__":
    main()
