"""How honest is the quality estimate? Estimated against true precision and recall over a grid.

    .venv/bin/python benchmarks/estimate_grid.py [--people 10000,100000] [--partners 2,3,5]
        [--errors low,medium,high] [--methods fields,clk] [--workdir DIR] [--markdown]

Each cell is an independent UK-like population (``ukpop.py``, not ``oda_fed.synth``) linked by
:func:`oda_fed.embedded.link_files` with the project's defaults and ``method`` as given; the
estimate is the one a user sees without truth (:meth:`oda_fed.linkage.LinkResult.estimated`),
and the truth scores pairs across partners as ``quality.py`` does. A cell fails the target when
either estimate is more than 0.02 from the truth.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks
from hardening import render  # noqa: E402
from quality import _oda_fed, make_ukpop, score  # noqa: E402

#: How far an estimate may be from the truth (issue 11).
TOLERANCE = 0.02
HEADER = ("method", "people", "partners", "errors", "records", "P", "est. P", "R", "est. R",
          "F1", "worst gap", "time")  # fmt: skip


def cell(folder: Path, method: str) -> dict:
    """Link one data set; its true and estimated precision and recall."""
    truth = pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False)
    started = time.perf_counter()
    outcome = _oda_fed(folder, method=method)
    seconds = time.perf_counter() - started
    true = score(outcome.members, truth)
    est_p, est_r = outcome.estimated or (float("nan"), float("nan"))
    gap = max(abs(est_p - true.precision), abs(est_r - true.recall))
    return {"records": len(truth), "P": true.precision, "est. P": est_p, "R": true.recall,
            "est. R": est_r, "F1": true.f1, "gap": gap, "time": seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", default="10000,100000")
    parser.add_argument("--partners", default="2,3,5")
    parser.add_argument("--errors", default="low,medium,high")
    parser.add_argument("--methods", default="fields")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.gettempdir()) / "oda-fed-bench-quality"
    root.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    for people in (int(p) for p in args.people.split(",")):
        for partners in (int(p) for p in args.partners.split(",")):
            for errors in args.errors.split(","):
                folder = make_ukpop(root, people=people, partners=partners, errors=errors,
                                    seed=args.seed)  # fmt: skip
                for method in args.methods.split(","):
                    got = cell(folder, method)
                    failed += got["gap"] > TOLERANCE
                    rows.append([method, f"{people:,}", str(partners), errors,
                                 f"{got['records']:,}", *(f"{got[k]:.4f}" for k in
                                 ("P", "est. P", "R", "est. R", "F1")),
                                 f"{got['gap']:.3f}" + (" ✗" if got["gap"] > TOLERANCE else ""),
                                 f"{got['time']:.1f} s"])  # fmt: skip
                    print(" | ".join(rows[-1]), flush=True)
    print(render(rows, markdown=args.markdown, header=HEADER))
    print(f"{failed} of {len(rows)} cells with an estimate more than {TOLERANCE} from the truth")


if __name__ == "__main__":
    main()
