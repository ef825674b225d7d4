"""Multiparty solver benchmark: oda-fed's ``resolve`` beside anonlink's greedy solvers.

    .venv/bin/python benchmarks/solver.py [--population 20000] [--partners 3,4,5]
                                          [--errors medium,high] [--thresholds 0.7,0.8]
                                          [--seed 11]

For each number of partners ``P`` and error level, a synthetic region
(:func:`oda_fed.synth.generate`) is standardised and encoded as in ``benchmarks/blocking.py`` (the
project's default encodings of first name, last name, date of birth, sex and postcode; 1024-bit
CLKs). Every pair of partners is scored once over all record pairs with
:func:`oda_fed.matching.link.score_pairs` at the lowest threshold; each higher threshold keeps the
candidates at or above it, which is what scoring at that threshold returns. Then, on exactly the
same candidates:

- oda-fed: :func:`oda_fed.matching.resolve` (one record per partner, learnt ``trusted_from``);
  also with ``trusted_from=-inf`` (single linkage, oda-fed's earlier rule) and ``inf`` (complete
  linkage);
- anonlink 0.15.3: ``greedy_solve`` and ``probabilistic_greedy_solve`` (its defaults:
  ``merge_threshold=0.5``, deduplicated), in a ``.venv-ref`` subprocess. Both walk the candidates
  in the order given, so they receive them in oda-fed's global order (score descending, then
  dataset and row of each end): ties are broken the same way on both sides.

It prints two tables. Quality: per setting, the pairwise precision, recall and F1 of each solver
against the truth (cross-partner pairs of records of the same person,
:func:`oda_fed.matching.pairwise_quality`), the F1 differences, single linkage's F1 and the learnt
``trusted_from``. Time and checks: the median time of 3 calls after a warm-up (oda-fed's includes
putting the edges into its global order; anonlink's does not, as it is given them sorted), whether
each solver kept at most one record per partner in every entity, and whether oda-fed with
``trusted_from=inf`` found exactly anonlink greedy's entities. Nothing is asserted except that
anonlink's native solvers loaded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from _reference import run_reference
from blocking import FIELDS, SECRET

from oda_fed.encoding import default_field_encoding, encode_records
from oda_fed.matching import Candidates, PairCandidates, Quality, pairwise_quality, resolve
from oda_fed.matching.blocking import Blocking
from oda_fed.matching.link import score_pairs
from oda_fed.standardise import standardise_column
from oda_fed.synth import generate

REPEATS = 3

# Runs under .venv-ref. argv[1]: a folder of settings, each a sub-folder with the candidates in
# global order (sims, dset0, dset1, rec0, rec1) and sizes. Writes each solver's labels (one per
# record in global node order: dataset offset + row) and prints the times as JSON.
REFERENCE_SCRIPT = r"""
import json, statistics, sys, time
from pathlib import Path
import numpy as np
import anonlink.solving as solving
from anonlink.solving._multiparty_solving import (
    greedy_solve_native, probabilistic_greedy_solve_native)

# anonlink silently falls back to pure Python when its extension fails to load.
assert solving.greedy_solve is greedy_solve_native, "anonlink's native solver did not load"
assert solving.probabilistic_greedy_solve is probabilistic_greedy_solve_native
SOLVERS = {"greedy": solving.greedy_solve, "probabilistic": solving.probabilistic_greedy_solve}
repeats = int(sys.argv[2])
times = {}
for setting in sorted(Path(sys.argv[1]).iterdir()):
    load = lambda name: np.load(setting / f"{name}.npy")
    sizes = load("sizes")
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    candidates = (
        load("sims").astype(np.float64),
        (load("dset0").astype(np.uint32), load("dset1").astype(np.uint32)),
        (load("rec0").astype(np.uint32), load("rec1").astype(np.uint32)),
    )
    times[setting.name] = {}
    for name, solve in SOLVERS.items():
        solve(candidates)  # warm-up
        spent = []
        for _ in range(repeats):
            start = time.perf_counter()
            groups = solve(candidates)
            spent.append(time.perf_counter() - start)
        times[setting.name][name] = statistics.median(spent)
        labels = np.arange(offsets[-1], dtype=np.int64)
        for group in groups:
            nodes = [offsets[d] + r for d, r in group]
            labels[nodes] = min(nodes)
        np.save(setting / f"labels_{name}.npy", labels)
print(json.dumps(times))
"""


@dataclass(frozen=True)
class Region:
    """CLKs and true person codes of every partner of one synthetic region."""

    clks: list[np.ndarray]
    people: list[np.ndarray]


def make_region(*, population: int, partners: int, errors: str, seed: int) -> Region:
    """Standardise and encode every record of every partner; person ids become int codes."""
    data = generate(population=population, partners=partners, seed=seed, errors=errors)
    fields = [default_field_encoding(name, kind) for name, kind in FIELDS.items()]
    codes = {p: c for c, p in enumerate(sorted(set(data.truth["person_id"])))}
    person_of_record = {
        r: codes[p] for r, p in zip(data.truth["record_id"], data.truth["person_id"], strict=True)
    }
    clks, people = [], []
    for profile in data.profiles:
        frame = data.partners[profile.id]
        table = {}
        for name, kind in FIELDS.items():
            fmt = profile.date_format if kind == "date_of_birth" else None
            clean, _invalid = standardise_column(frame[profile.columns[name]], kind, fmt=fmt)
            table[name] = clean.tolist()
        clks.append(encode_records(table, fields=fields, secret=SECRET, context="solver-bench"))
        people.append(
            np.array([person_of_record[r] for r in frame[profile.record_id_column]], np.int64)
        )
    return Region(clks=clks, people=people)


def at_least(pairs: list[PairCandidates], threshold: float) -> list[PairCandidates]:
    """The candidates scoring at least ``threshold`` (what scoring at that threshold gives)."""
    kept = []
    for pair in pairs:
        found, keep = pair.candidates, pair.candidates.score >= threshold
        kept.append(
            PairCandidates(
                source_a=pair.source_a,
                source_b=pair.source_b,
                candidates=Candidates(
                    left=found.left[keep], right=found.right[keep], score=found.score[keep]
                ),
            )
        )
    return kept


def write_global_order(pairs: list[PairCandidates], sizes: list[int], folder: Path) -> None:
    """Save the edges in anonlink's candidate format, in the order oda-fed's resolve takes them."""
    folder.mkdir()
    src_a = np.concatenate([np.full(len(p.candidates), p.source_a) for p in pairs])
    src_b = np.concatenate([np.full(len(p.candidates), p.source_b) for p in pairs])
    left = np.concatenate([p.candidates.left for p in pairs])
    right = np.concatenate([p.candidates.right for p in pairs])
    score = np.concatenate([p.candidates.score for p in pairs])
    # score_pairs gives source_a < source_b, so the edges are already oriented as resolve does.
    assert (src_a < src_b).all()
    order = np.lexsort((right, src_b, left, src_a, -score))
    columns = {"sims": score, "dset0": src_a, "dset1": src_b, "rec0": left, "rec1": right}
    for name, values in columns.items():
        np.save(folder / f"{name}.npy", values[order])
    np.save(folder / "sizes.npy", np.array(sizes, dtype=np.int64))


def split(labels: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Per-dataset label arrays from labels in global node order."""
    return np.split(labels, np.cumsum(sizes)[:-1])


def one_per_partner(labels: list[np.ndarray]) -> bool:
    """Whether no entity holds two records of one partner."""
    return all(len(np.unique(per_dataset)) == len(per_dataset) for per_dataset in labels)


def time_resolve(
    sizes: list[int], pairs: list[PairCandidates]
) -> tuple[list[np.ndarray], float, float]:
    """oda-fed's labels, median time and learnt ``trusted_from`` with the default rule."""
    resolve(sizes, pairs)  # warm-up (Numba compilation is cached, but the first call loads it)
    spent = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = resolve(sizes, pairs)
        spent.append(time.perf_counter() - start)
    return result.labels, statistics.median(spent), result.trusted_from


def same_partition(x: list[np.ndarray], y: list[np.ndarray]) -> bool:
    """Whether two labellings group the records the same way, whatever the entity numbers."""
    a, b = np.concatenate(x), np.concatenate(y)
    n_a, n_b = len(np.unique(a)), len(np.unique(b))
    return n_a == n_b == np.unique(np.stack([a, b]), axis=1).shape[1]


def _prf(q: Quality) -> str:
    return f"{q.precision:.4f} / {q.recall:.4f} / **{q.f1:.4f}**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=20_000, help="people in each region")
    parser.add_argument("--partners", default="3,4,5", help="partner counts, comma-separated")
    parser.add_argument("--errors", default="medium,high", help="error levels, comma-separated")
    parser.add_argument("--thresholds", default="0.7,0.8", help="Dice thresholds")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    partner_counts = [int(p) for p in args.partners.split(",")]
    error_levels = args.errors.split(",")
    thresholds = sorted(float(t) for t in args.thresholds.split(","))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{numba.get_num_threads()} Numba threads; realistic 1024-bit CLKs, population "
        f"{args.population:,}, seed {args.seed}; times are medians of {REPEATS} calls"
    )

    rows = []
    with tempfile.TemporaryDirectory(prefix="oda-fed-solver-") as tmp:
        for partners in partner_counts:
            for errors in error_levels:
                region = make_region(
                    population=args.population, partners=partners, errors=errors, seed=args.seed
                )
                sizes = [len(c) for c in region.clks]
                # All pairs, so that the candidates do not depend on blocking.
                scored = score_pairs(
                    region.clks, threshold=thresholds[0], blocking=Blocking(method="none")
                )
                for threshold in thresholds:
                    pairs = at_least(scored, threshold)
                    name = f"{partners}-{errors}-{threshold}"
                    write_global_order(pairs, sizes, Path(tmp) / name)
                    labels, spent, trusted = time_resolve(sizes, pairs)
                    rows.append(
                        {
                            "name": name,
                            "setting": f"| {partners} | {errors} | {threshold} ",
                            "records": sum(sizes),
                            "candidates": sum(len(p.candidates) for p in pairs),
                            "people": region.people,
                            "sizes": sizes,
                            "trusted_from": trusted,
                            "oda": (labels, spent),
                            # The two fixed levels: single linkage (oda-fed's previous rule)
                            # and complete linkage, which must reproduce anonlink's greedy.
                            "single": resolve(sizes, pairs, trusted_from=-math.inf).labels,
                            "complete": resolve(sizes, pairs, trusted_from=math.inf).labels,
                        }
                    )
        times = json.loads(run_reference(REFERENCE_SCRIPT, args=[tmp, str(REPEATS)]))
        for row in rows:
            for solver in ("greedy", "probabilistic"):
                flat = np.load(Path(tmp) / row["name"] / f"labels_{solver}.npy")
                row[solver] = (split(flat, row["sizes"]), times[row["name"]][solver])

    print(
        "\nQuality (pairwise precision / recall / F1 against the truth; ΔF1 = oda-fed − anonlink)"
        "\n\n| P | errors | threshold | records | candidates | oda-fed `resolve` "
        "| anonlink `greedy_solve` | ΔF1 | anonlink `probabilistic_greedy_solve` | ΔF1 "
        "| oda-fed single linkage F1 | learnt `trusted_from` |"
    )
    print("|" + "---|" * 12)
    checks = []
    for row in rows:
        quality = {
            solver: pairwise_quality(row[solver][0], row["people"])
            for solver in ("oda", "greedy", "probabilistic")
        }
        single = pairwise_quality(row["single"], row["people"])
        print(
            f"{row['setting']}| {row['records']:,} | {row['candidates']:,} "
            f"| {_prf(quality['oda'])} | {_prf(quality['greedy'])} "
            f"| {quality['oda'].f1 - quality['greedy'].f1:+.4f} "
            f"| {_prf(quality['probabilistic'])} "
            f"| {quality['oda'].f1 - quality['probabilistic'].f1:+.4f} "
            f"| {single.f1:.4f} | {row['trusted_from']:.4f} |"
        )
        checks.append(
            {
                "ms": {s: 1000 * row[s][1] for s in ("oda", "greedy", "probabilistic")},
                "one": ", ".join(
                    "yes" if one_per_partner(row[s][0]) else "NO"
                    for s in ("oda", "greedy", "probabilistic")
                ),
                "same": "yes" if same_partition(row["complete"], row["greedy"][0]) else "NO",
            }
        )

    print(
        "\nTime and checks\n\n| P | errors | threshold | oda-fed ms | anonlink greedy ms "
        "| ratio (greedy / oda-fed) | anonlink probabilistic ms "
        "| one record per partner (oda-fed, greedy, probabilistic) "
        "| `trusted_from=inf` gives anonlink greedy's entities |"
    )
    print("|" + "---|" * 9)
    for row, check in zip(rows, checks, strict=True):
        ms = check["ms"]
        print(
            f"{row['setting']}| {ms['oda']:.1f} | {ms['greedy']:.1f} "
            f"| {ms['greedy'] / ms['oda']:.1f}× | {ms['probabilistic']:.1f} | {check['one']} "
            f"| {check['same']} |"
        )


if __name__ == "__main__":
    main()
