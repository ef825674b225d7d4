"""Dice kernel benchmark: oda-fed's dice_candidates against anonlink 0.15.3, same inputs, same run.

    .venv/bin/python benchmarks/kernel.py [--size N] [--size-low N] [--repeats R]

Both sides score the same 1024-bit CLKs, written once to ``.npy`` files that each side reads:

* random CLKs, each bit set with probability 0.45 (1 % of b's rows are noisy copies of a's, so
  that every threshold finds some pairs to check);
* realistic CLKs: a synthetic population (:func:`oda_fed.synth.generate`, two partners, medium
  errors) standardised and encoded with :func:`oda_fed.encoding.encode_records` and the
  project's default encodings of first name, last name, date of birth, sex and postcode.

For each data kind and each threshold (0.5, 0.7, 0.8, 0.9), anonlink's single call
``dice_coefficient_accelerated((clks_a, clks_b), threshold)`` runs in the reference environment
(``.venv-ref``; one core, its C++ extension checked to be loaded, its input converted to
``bitarray`` beforehand and not timed), and oda-fed's ``dice_candidates(a, b, threshold=t)``
runs here on every core (the median of ``--repeats`` calls, after one warm-up call). Both calls
return all candidate pairs sorted by score. Sizes: ``--size-low`` rows a side at threshold 0.5,
where many pairs pass and anonlink slows down, ``--size`` rows a side above it.

It prints, per row, comparisons per second (rows of a times rows of b, divided by the time of
one call), the ratio, the number of candidates and the match rate, and it checks that both
sides found exactly the same pairs with the same scores (to 1e-12); any difference is reported
and makes the script exit non-zero. Nothing is asserted about speed: the machines are shared and
noisy, so quote the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import pandas as pd
from _reference import reference_python  # benchmarks/ is on sys.path when run as a script

from oda_fed.encoding import default_field_encoding, encode_records
from oda_fed.matching import Candidates, dice_candidates
from oda_fed.standardise import standardise_column
from oda_fed.synth import generate

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.5, 0.7, 0.8, 0.9)
FIELDS = {
    "first_name": "name",
    "last_name": "name",
    "date_of_birth": "date_of_birth",
    "sex": "sex",
    "postcode": "postcode",
}

# Runs under .venv-ref. argv: a.npy b.npy out_dir jobs_json. Prints one JSON object.
_RUN_ANONLINK = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from bitarray import bitarray
import anonlink
import anonlink.similarities as similarities
# anonlink silently falls back to pure Python when its C++ extension fails to import: refuse.
try:
    from anonlink.similarities import _dice
except ImportError as error:
    sys.exit(f"anonlink's C++ extension anonlink.similarities._dice did not load: {error}")
from anonlink.similarities import dice_coefficient_accelerated
if similarities.dice_coefficient is not dice_coefficient_accelerated:
    sys.exit("anonlink.similarities.dice_coefficient is not the accelerated (C++) version")
if not _dice.__file__.endswith((".so", ".pyd")):
    sys.exit(f"anonlink.similarities._dice is not a compiled extension: {_dice.__file__}")

a_path, b_path, out_dir, jobs = sys.argv[1:5]
out = Path(out_dir)

def bitarrays(clks):
    rows = []
    for row in np.ascontiguousarray(clks).view(np.uint8):
        bits = bitarray()
        bits.frombytes(row.tobytes())
        rows.append(bits)
    return rows

start = time.perf_counter()
a = bitarrays(np.load(a_path))
b = bitarrays(np.load(b_path))
convert = time.perf_counter() - start
results = []
for job in json.loads(jobs):
    n, threshold, name = job["n"], job["threshold"], job["name"]
    start = time.perf_counter()
    sims, (left, right) = dice_coefficient_accelerated((a[:n], b[:n]), threshold)
    seconds = time.perf_counter() - start
    np.save(out / f"{name}_score.npy", np.frombuffer(sims, dtype=np.float64))
    np.save(out / f"{name}_left.npy", np.frombuffer(left, dtype=np.uint32).astype(np.int64))
    np.save(out / f"{name}_right.npy", np.frombuffer(right, dtype=np.uint32).astype(np.int64))
    results.append({"name": name, "seconds": seconds, "candidates": len(sims)})
print(json.dumps({"anonlink": anonlink.__version__ if hasattr(anonlink, "__version__") else "?",
                  "extension": _dice.__file__, "convert_seconds": convert, "results": results}))
"""


def random_clks(n: int, *, rng: np.random.Generator, fill: float = 0.45) -> np.ndarray:
    """``n`` 1024-bit CLKs whose bits are set independently with probability ``fill``."""
    bits = (rng.random((n, 1024)) < fill).astype(np.uint8)
    return np.packbits(bits, axis=1, bitorder="little").view(np.uint64)


def random_pair(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of random CLKs; every 100th row of b is a copy of a row of a with 3 % of its
    bits flipped (Dice about 0.95), so that the high thresholds find (and check) some pairs."""
    rng = np.random.default_rng(seed)
    a, b = random_clks(n, rng=rng), random_clks(n, rng=rng)
    copies = np.arange(0, n, 100)
    flips = random_clks(len(copies), rng=rng, fill=0.03)
    b[copies] = a[rng.permutation(n)[: len(copies)]] ^ flips
    return a, b


def realistic_clks(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` CLKs of each of two partners' extracts of one synthetic population."""
    # About half the population appears in the smaller partner's extract; ask for enough.
    data = generate(population=max(2 * n + 2000, 4000), partners=2, seed=seed, errors="medium")
    fields = [default_field_encoding(name, kind) for name, kind in FIELDS.items()]
    sides = []
    for profile in data.profiles:
        frame = data.partners[profile.id].iloc[:n]
        if len(frame) < n:
            sys.exit(f"the synthetic partner {profile.id} has only {len(frame):,} records")
        table = {}
        for name, kind in FIELDS.items():
            fmt = profile.date_format if kind == "date_of_birth" else None
            clean, _invalid = standardise_column(frame[profile.columns[name]], kind, fmt=fmt)
            table[name] = clean.tolist()
        secret = b"benchmark linkage secret, 32 b!"
        sides.append(encode_records(table, fields=fields, secret=secret, context="kernel-bench"))
    return sides[0], sides[1]


def _pairs(left: np.ndarray, right: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, ...]:
    order = np.lexsort((right, left))
    return left[order], right[order], score[order]


def compare(ours: Candidates, name: str, out: Path) -> str:
    """'same' when anonlink found exactly our pairs with our scores, else what differs."""
    theirs = [np.load(out / f"{name}_{column}.npy") for column in ("left", "right", "score")]
    a_left, a_right, a_score = _pairs(*theirs)
    o_left, o_right, o_score = _pairs(ours.left, ours.right, ours.score)
    if len(a_left) != len(o_left):
        return f"DIFFERENT: anonlink {len(a_left):,} pairs, oda-fed {len(o_left):,}"
    if not (np.array_equal(a_left, o_left) and np.array_equal(a_right, o_right)):
        return "DIFFERENT: same count, different pairs"
    worst = float(np.max(np.abs(a_score - o_score), initial=0.0))
    return "same" if worst <= 1e-12 else f"DIFFERENT: scores differ by up to {worst:.3g}"


def time_ours(a: np.ndarray, b: np.ndarray, threshold: float, repeats: int) -> tuple:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        found = dice_candidates(a, b, threshold=threshold)
        times.append(time.perf_counter() - start)
    return statistics.median(times), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000, help="rows a side, thresholds > 0.5")
    parser.add_argument("--size-low", type=int, default=10_000, help="rows a side at 0.5")
    parser.add_argument("--repeats", type=int, default=5, help="timed oda-fed calls per row")
    args = parser.parse_args()
    n_max = max(args.size, args.size_low)
    started = time.perf_counter()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"oda-fed uses {numba.get_num_threads()} Numba threads, anonlink one core (its single "
        "call is single-threaded)"
    )
    print("generating the data ...", flush=True)
    data = {
        "random": random_pair(n_max, seed=1),
        "realistic": realistic_clks(n_max, seed=7),
    }
    for kind, (a, b) in data.items():
        fill = (
            np.unpackbits(a[:1000].view(np.uint8)).mean()
            + np.unpackbits(b[:1000].view(np.uint8)).mean()
        ) / 2
        print(f"  {kind}: 2 x {n_max:,} CLKs of 1024 bits, mean fill {fill:.2f}")

    # Warm-up: load (or compile) the Numba kernels before anything is timed.
    dice_candidates(data["random"][0][:64], data["random"][1][:64], threshold=0.5)

    rows = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="oda-fed-kernel-bench-") as tmp:
        work = Path(tmp)
        for kind, (a, b) in data.items():
            np.save(work / "a.npy", a)
            np.save(work / "b.npy", b)
            jobs = [
                {
                    "name": f"{kind}_{t}",
                    "threshold": t,
                    "n": args.size_low if t == 0.5 else args.size,
                }
                for t in THRESHOLDS
            ]
            print(f"running anonlink on the {kind} CLKs (reference environment) ...", flush=True)
            done = subprocess.run(
                [str(reference_python()), "-c", _RUN_ANONLINK, str(work / "a.npy"),
                 str(work / "b.npy"), str(work), json.dumps(jobs)],
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                sys.exit(f"the anonlink run failed:\n{done.stderr[-4000:]}")
            reference = json.loads(done.stdout)
            print(f"  anonlink {reference['anonlink']}, extension {reference['extension']}")
            print(f"running oda-fed on the {kind} CLKs ...", flush=True)
            for job, theirs in zip(jobs, reference["results"], strict=True):
                n, threshold = job["n"], job["threshold"]
                seconds, found = time_ours(a[:n], b[:n], threshold, args.repeats)
                agree = compare(found, job["name"], work)
                failed |= agree != "same"
                pairs = n * n
                rows.append(
                    {
                        "data": kind,
                        "threshold": threshold,
                        "pairs": f"{n:,} x {n:,}",
                        "candidates": len(found),
                        "match rate": f"{len(found) / pairs:.2%}",
                        "anonlink s": round(theirs["seconds"], 3),
                        "anonlink M/s": round(pairs / theirs["seconds"] / 1e6),
                        "oda-fed s": round(seconds, 3),
                        "oda-fed M/s": round(pairs / seconds / 1e6),
                        "ratio": f"{theirs['seconds'] / seconds:.1f}x",
                        "same pairs": agree,
                    }
                )
    table = pd.DataFrame(rows)
    print()
    print("comparisons per second (M/s) = rows of a x rows of b / seconds of one call")
    print(table.to_string(index=False))
    print(f"\nfinished in {time.perf_counter() - started:.0f} s")
    if failed:
        sys.exit("oda-fed and anonlink disagree on some candidates (see 'same pairs')")


if __name__ == "__main__":
    main()
