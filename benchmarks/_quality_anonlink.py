"""clkhash 0.18.3 encoding and anonlink 0.15.3 matching: the floor of ``quality.py``.

    .venv-ref/bin/python benchmarks/_quality_anonlink.py SPEC.json

``SPEC.json`` names the tables (CSVs of ``record_id`` and the fields, cleaned by ``quality.py``),
the clkhash v3 schema (``record_id`` ignored, then one feature per field in column order), the
secret, the thresholds and an output folder. Every table is encoded with ``generate_clks``;
anonlink's accelerated Dice finds every pair across tables at the lowest threshold (in
``find_candidate_pairs``' order), and ``greedy_solve`` resolves the candidates at or above each threshold. It
writes ``labels.npy`` (one row per threshold, one column per record in table order: the record's
group, or its own column index alone) and prints one JSON line of timings.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from anonlink.similarities import dice_coefficient_accelerated
from anonlink.solving import greedy_solve
from anonlink.solving._multiparty_solving import greedy_solve_native
from clkhash import clk
from clkhash.schema import from_json_dict

# anonlink silently falls back to pure Python when its extension fails to load.
assert greedy_solve is greedy_solve_native, "anonlink's native solver did not load"
SLICE = 2000
MAX_CANDIDATES = 40_000_000


def candidates(datasets: list, threshold: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every pair across datasets at or above ``threshold``, by anonlink's accelerated Dice, in
    ``find_candidate_pairs``' order (score descending, then dataset and record indices).

    ``find_candidate_pairs`` itself merges the pairs as Python tuples, which needs several GB
    at the lowest threshold; its similarity function does the work either way.
    """
    parts, total = [], 0
    for i in range(len(datasets)):
        for j in range(i + 1, len(datasets)):
            # A slice of the left side at a time, so that too many candidates stop the run
            # before they fill the machine's memory.
            for start in range(0, len(datasets[i]), SLICE):
                left = datasets[i][start : start + SLICE]
                sims, (rec0, rec1) = dice_coefficient_accelerated((left, datasets[j]), threshold)
                n = len(sims)
                total += n
                if total > MAX_CANDIDATES:
                    sys.exit(f"over {MAX_CANDIDATES:,} candidates at threshold {threshold}")
                parts.append(
                    (
                        np.frombuffer(sims, dtype=np.float64),
                        np.full(n, i, np.uint32),
                        np.full(n, j, np.uint32),
                        np.frombuffer(rec0, dtype=np.uint32) + np.uint32(start),
                        np.frombuffer(rec1, dtype=np.uint32),
                    )
                )
    if not parts:
        return np.empty(0), [np.empty(0, np.uint32) for _ in range(4)]
    sims, d0, d1, r0, r1 = (np.concatenate(column) for column in zip(*parts, strict=True))
    order = np.lexsort((r1, r0, d1, d0, -sims))
    return sims[order], [a[order] for a in (d0, d1, r0, r1)]


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    schema = from_json_dict(spec["schema"])
    started = time.perf_counter()
    datasets = []
    for table in spec["tables"]:
        with open(table["path"], newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))[1:]
        datasets.append(clk.generate_clks(rows, schema, spec["secret"]))
    encoded = time.perf_counter()
    thresholds = sorted(spec["thresholds"])
    sims, arrays = candidates(datasets, thresholds[0])
    found = time.perf_counter()
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in datasets])])
    labels = np.empty((len(thresholds), offsets[-1]), dtype=np.int64)
    solved = {}
    for row, threshold in enumerate(thresholds):
        begin = time.perf_counter()
        keep = sims >= threshold
        d0, d1, r0, r1 = (a[keep] for a in arrays)
        groups = greedy_solve((sims[keep], (d0, d1), (r0, r1)))
        solved[str(threshold)] = time.perf_counter() - begin
        labels[row] = np.arange(offsets[-1])
        for group in groups:
            members = [offsets[d] + r for d, r in group]
            labels[row, members] = min(members)
    np.save(Path(spec["out"]) / "labels.npy", labels)
    print(
        json.dumps(
            {
                "thresholds": thresholds,
                "encode": encoded - started,
                "candidates": found - encoded,
                "solve": solved,
                "pairs": len(sims),
            }
        )
    )


if __name__ == "__main__":
    main()
