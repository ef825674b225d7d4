"""Cluster matching benchmark: N x N LSH candidate generation on a Dask LocalCluster.

    PYTHONPATH=. .venv/bin/python benchmarks/scaling.py [--sizes 1000000,10000000]
        [--workers 2] [--threads-max 2000000] [--real 100000] [--threshold 0.8]
        [--fields 400000] [--shared DIR] [--seed 7]

For each size ``N`` (default 10,000,000), two sides of ``N`` synthetic CLKs (1024 bits) are
linked at ``--threshold`` with LSH blocking (:class:`~oda_fed.matching.blocking.Blocking` with
``method="lsh"``, its automatic bands for the inputs' fill) through
:func:`~oda_fed.matching.blocking.blocked_candidates` on a ``distributed.LocalCluster`` of
``--workers`` worker processes (one thread each; the Numba kernels use every core inside a
unit). It prints the wall time, the units (band spans) and their mean wall and CPU seconds,
the CPU-seconds per band, the candidates, and the peak resident memory of each worker process
and of the client. Where ``N <= --threads-max`` the same link runs in-process (the default
executor) and the ratio of the two times is printed; the candidates must be identical.

The CLKs are random Bloom filters, not encoded records: encoding 10M records takes longer
than matching them. Each bit is set with probability 7/16 (``(w & x) | (y & z)`` of four
random words: fill 0.44, near the 0.41 of this project's default encoding of synth records),
and half of the right side are copies of left records (in random order) with each bit flipped
with probability 1/32 (Dice about 0.96, as a typical true match). ``--real N`` links ``N``
encoded synth records a side (:func:`blocking.realistic_pair`) the same two ways, to compare.
``--fields P`` links a synthetic population of P people at 2 partners the project's default
way (field evidence, EM; LSH blocking) in-process and on the cluster, end to end from encoded
records: the time of each, what the units cost by kind, the CPU time of the coordinator's own
process on the cluster (all that is not a unit), and whether the entities and the EM model are
the same.

A worker's peak memory counts the pages of the memory-mapped CLK files it touched (shared
with the other workers through the page cache) as well as its own. The machine is shared and
noisy: read times as indications, and compare within one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from oda_fed.matching.blocking import Blocking, blocked_candidates, estimate_fill
from oda_fed.matching.executor import DaskExecutor, open_executor

CHUNK = 1_000_000


def _words(rng: np.random.Generator, shape: tuple[int, int], ands: int) -> np.ndarray:
    out = rng.integers(0, 2**64, size=shape, dtype=np.uint64)
    for _ in range(ands - 1):
        out &= rng.integers(0, 2**64, size=shape, dtype=np.uint64)
    return out


def random_pair(n: int, *, words: int = 16, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random CLKs a side at fill 7/16; half the right side are noisy left copies."""
    rng = np.random.default_rng(seed)
    a = np.empty((n, words), dtype=np.uint64)
    b = np.empty((n, words), dtype=np.uint64)
    for side in (a, b):
        for lo in range(0, n, CHUNK):
            shape = (min(CHUNK, n - lo), words)
            side[lo : lo + shape[0]] = _words(rng, shape, 2) | _words(rng, shape, 2)
    copies = np.sort(rng.choice(n, size=n // 2, replace=False))
    for lo in range(0, len(copies), CHUNK):
        rows = copies[lo : lo + CHUNK]
        b[lo : lo + len(rows)] = a[rows] ^ _words(rng, (len(rows), words), 5)
    return a, b[rng.permutation(n)]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(a: np.ndarray, b: np.ndarray, *, threshold: float, executor=None) -> tuple:
    params = Blocking(method="lsh").params_for(a, b, threshold=threshold)
    started = time.perf_counter()
    found, stats = blocked_candidates(a, b, threshold=threshold, params=params,
                                      executor=executor)  # fmt: skip
    return found, stats, time.perf_counter() - started


def report(label: str, a, b, ex: DaskExecutor, threads_max: int, threshold: float) -> None:
    n = len(a)
    print(f"\n{label}: {n:,} x {len(b):,}, fill {estimate_fill(a, b):.3f}", flush=True)
    before = len(ex.units)
    found, stats, wall = run(a, b, threshold=threshold, executor=ex)
    units = [d for what, d in ex.units[before:] if what == "LSH bands"]
    merges = [d for what, d in ex.units[before:] if what != "LSH bands"]
    cpu = sum(d.cpu_seconds for d in units)
    peak: dict[int, int] = {}
    for d in units + merges:
        peak[d.pid] = max(peak.get(d.pid, 0), d.peak_rss)
    print(f"  LSH: {stats.bands} bands of {stats.bits_per_band} bits; {stats.pairs_compared:,} "
          f"pairs scored; {len(found):,} candidates")  # fmt: skip
    print(f"  dask, {ex.workers()} workers: {wall:.1f} s wall; {len(units)} units of "
          f"{ex.bands_per_unit} bands, {np.mean([d.seconds for d in units]):.2f} s wall and "
          f"{cpu / len(units):.2f} CPU-s each ({cpu / stats.bands:.2f} CPU-s per band, "
          f"{cpu:.0f} CPU-s in all); merging their pairs {len(merges)} units, "
          f"{sum(d.cpu_seconds for d in merges):.1f} CPU-s")  # fmt: skip
    print("  peak memory per worker: "
          + ", ".join(f"{v / 2**20:,.0f} MiB" for _, v in sorted(peak.items()))
          + f"; client so far {_peak_mib():,.0f} MiB", flush=True)  # fmt: skip
    if n <= threads_max:
        same, _, local = run(a, b, threshold=threshold)
        equal = all(np.array_equal(x, y) for x, y in zip(
            (found.left, found.right, found.score), (same.left, same.right, same.score),
            strict=True))  # fmt: skip
        print(f"  threads (in-process): {local:.1f} s; dask / threads {wall / local:.2f}; "
              f"identical: {equal}", flush=True)  # fmt: skip


def fields(population: int, ex: DaskExecutor, seed: int) -> None:
    """The default field-aware linkage of a synthetic population, in-process and on ``ex``."""
    import dataclasses

    from oda_fed.config import load_project
    from oda_fed.embedded import encode_files
    from oda_fed.linkage import settings_for
    from oda_fed.matching.link import link_with_quality
    from oda_fed.synth import generate, write, write_project

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        synthetic = generate(population=population, partners=2, seed=seed, errors="medium")
        write(synthetic, folder)
        write_project(synthetic, folder / "project.toml")
        loaded = load_project(folder / "project.toml")
        paths = sorted(p for p in folder.glob("*.csv") if p.stem != "truth")
        extracts = encode_files(paths, project=loaded, secret=b"k" * 32)
    clks = [e.clks for e in extracts.values()]
    evidence = [e.evidence for e in extracts.values()]
    settings = dataclasses.replace(settings_for(loaded.project.linkage),
                                   blocking=Blocking(method="lsh"))  # fmt: skip
    print(f"\nfield-aware linkage, {len(clks[0]):,} x {len(clks[1]):,} encoded synth records, LSH")
    started = time.perf_counter()
    here = link_with_quality(clks, settings=settings, evidence=evidence)
    local = time.perf_counter() - started
    before = len(ex.units)
    started, own = time.perf_counter(), time.process_time()
    there = link_with_quality(clks, settings=settings, evidence=evidence, executor=ex)
    wall, own = time.perf_counter() - started, time.process_time() - own
    kinds: dict[str, list] = {}
    for what, d in ex.units[before:]:
        kinds.setdefault(what, []).append(d)
    same = all(np.array_equal(x, y) for x, y in zip(here.clustering.labels,
                                                    there.clustering.labels, strict=True))  # fmt: skip
    model = here.model is not None and there.model is not None and (
        here.model.to_json() == there.model.to_json())  # fmt: skip
    print(f"  in-process {local:.1f} s; on the cluster {wall:.1f} s ({wall / local:.2f}); "
          f"same entities: {same}; same EM model: {model}; the coordinator's own process "
          f"{own:.1f} CPU-s")  # fmt: skip
    for what, done in kinds.items():
        cpu = sum(d.cpu_seconds for d in done)
        print(f"  {what}: {len(done)} units, {cpu:.1f} CPU-s in all", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-max", type=int, default=2_000_000)
    parser.add_argument("--real", type=int, default=0, help="encoded synth records a side")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--fields", type=int, default=0, help="people, field-aware linkage")
    parser.add_argument("--shared", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Numba threads {numba.get_num_threads()}, threshold {args.threshold}; "
          "the machine is shared with other work")  # fmt: skip
    shared = args.shared or Path(tempfile.gettempdir()) / "oda-fed-scaling"
    with open_executor(f"local:{args.workers}", shared_dir=shared) as ex:
        assert isinstance(ex, DaskExecutor)
        warm = random_pair(20_000, seed=args.seed)  # compiles the kernels in every process
        run(*warm, threshold=args.threshold, executor=ex)
        run(*warm, threshold=args.threshold)
        if args.real:
            sys.path.insert(0, str(Path(__file__).parent))
            from blocking import realistic_pair

            a, b, _, _ = realistic_pair(args.real, seed=args.seed)
            report("encoded synth records", a, b, ex, args.threads_max, args.threshold)
        if args.fields:
            fields(args.fields, ex, args.seed)
        for n in (int(s) for s in args.sizes.split(",") if int(s) > 0):
            started = time.perf_counter()
            a, b = random_pair(n, seed=args.seed)
            print(f"\n(made {n:,} x {n:,} random CLKs in {time.perf_counter() - started:.0f} s)")
            report("random CLKs", a, b, ex, args.threads_max, args.threshold)
            del a, b


if __name__ == "__main__":
    main()
