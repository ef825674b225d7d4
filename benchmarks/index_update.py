"""An update of a linked index against a full link: time and quality, per linkage method.

    .venv/bin/python benchmarks/index_update.py [--data synth,ukpop] [--people 20000]
        [--share 0.9] [--workdir DIR]

Each data set (3 partners; ``synth`` from :mod:`oda_fed.synth`, ``ukpop`` from the independent
:mod:`ukpop` generator, medium errors) is encoded once with its own project. Then, for
``method = "fields"`` (the default) and ``"clk"``: an index is built from every partner's first
``--share`` of records and updated with all of them (only the rest is scored, with the weights
or threshold of the build), against a full link of everything into a fresh index. Times are of
the linkage alone (encoding excluded), on this machine, in this run; quality is pairwise P / R /
F1 across partners against the generator's truth (``quality.score``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402
import ukpop  # noqa: E402

from oda_fed.config import load_project  # noqa: E402
from oda_fed.index import Extract, LinkedIndex  # noqa: E402
from oda_fed.linkage import settings_for  # noqa: E402
from oda_fed.node.encode import EncodedSource, encode_file  # noqa: E402
from oda_fed.node.sources import layout_for  # noqa: E402

SECRET = quality.SECRET


def make(name: str, folder: Path, people: int) -> Path:
    """The data set's folder (project, partner files, ``truth.csv``), made once."""
    if name == "ukpop":
        return ukpop.make_population(folder, people=people, partners=3, errors="medium", seed=1)
    from oda_fed.synth import generate, write, write_project

    synthetic = generate(population=people, partners=3, seed=7, errors="medium")
    write(synthetic, folder)
    write_project(synthetic, folder / "project.toml")
    return folder


def extract(encoded: EncodedSource, share: float = 1.0) -> Extract:
    take = np.arange(int(len(encoded) * share))
    return Extract(
        record_ids=[str(r) for r in encoded.record_ids[take]],
        clks=np.ascontiguousarray(encoded.clks[take]),
        tokens={k: [v[i] for i in take] for k, v in encoded.tokens.items()} or None,
        evidence=None if encoded.evidence is None else encoded.evidence.take(take),
    )


def run(folder: Path, *, share: float, workdir: Path) -> list[dict]:
    """One row per method and way (update, full link) for the data set in ``folder``."""
    loaded = load_project(folder / "project.toml")
    project = loaded.project
    encoded = {
        # Malformed values (impossible dates) count as missing, as quality.py reads them.
        p.id: encode_file(
            folder / f"{p.id}.csv",
            project=project,
            secret=SECRET,
            layout=replace(layout_for(project, p.id), on_invalid="missing"),
        )  # fmt: skip
        for p in project.partners
    }
    truth = pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False)
    words = project.linkage.wire_bits // 64
    rows = []
    for method in ("fields", "clk"):
        settings = replace(settings_for(project.linkage), method=method)
        for way in ("update", "full link"):
            path = workdir / f"{folder.name}-{method}-{way.replace(' ', '-')}.index"
            path.unlink(missing_ok=True)
            with LinkedIndex.open(path, fingerprint=loaded.fingerprint, words=words,
                                  create=True) as index:  # fmt: skip
                if way == "update":
                    index.link({s: extract(e, share) for s, e in encoded.items()},
                               settings=settings)  # fmt: skip
                started = time.perf_counter()
                report = index.link({s: extract(e) for s, e in encoded.items()}, settings=settings)
                seconds = time.perf_counter() - started
                members = index.links(include_singletons=True)
            got = quality.score(members.rename(columns={"entity_id": "entity"}), truth)
            rows.append({"data": folder.name, "records": sum(len(e) for e in encoded.values()),
                         "method": method, "way": way, "scored": report.totals().scored
                         if way == "update" else None, "seconds": seconds, "P": got.precision,
                         "R": got.recall, "F1": got.f1})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="synth,ukpop")
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--share", type=float, default=0.9)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.gettempdir()) / "oda-fed-bench-index"
    rows = []
    for name in [d for d in args.data.split(",") if d]:
        folder = root / f"{name}-3x{args.people}"
        if not (folder / "truth.csv").exists():
            folder.mkdir(parents=True, exist_ok=True)
            make(name, folder, args.people)
        rows += run(folder, share=args.share, workdir=root)
    table = Table(title=f"a linked index: adding the last {1 - args.share:.0%} against a full link")
    for column in ("data", "records", "method", "way", "scored", "seconds", "P", "R", "F1"):
        table.add_column(column, justify="left" if column in ("data", "method", "way") else "right")
    for r in rows:
        table.add_row(r["data"], f"{r['records']:,}", r["method"], r["way"],
                      "all" if r["scored"] is None else f"{r['scored']:,}", f"{r['seconds']:.1f}",
                      f"{r['P']:.4f}", f"{r['R']:.4f}", f"{r['F1']:.4f}")  # fmt: skip
    Console(width=140).print(table)
    return rows


if __name__ == "__main__":
    main()
