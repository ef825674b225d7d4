"""LSH blocking benchmark: reduction ratio, pair completeness and time on realistic CLKs.

    .venv/bin/python benchmarks/blocking.py [--sizes 10000,100000] [--threshold 0.8]
                                            [--all-pairs-max 100000] [--seed 7]

For each size ``n``, a synthetic population (:func:`oda_fed.synth.generate`, two partners,
medium errors) is standardised and encoded (:func:`oda_fed.encoding.encode_records`, the
project's default encodings of first name, last name, date of birth, sex and postcode; 1024-bit
CLKs), and the first ``n`` records of each partner are linked. The truth is every cross pair of
records of the same person.

It prints, per size: the auto parameters (:func:`oda_fed.matching.blocking.auto_params` at the
inputs' mean fill), the time of :func:`~oda_fed.matching.blocking.blocked_candidates` (blocking
and exact scoring inside each block), the pairs scored and the reduction ratio they give (a pair
sharing several bands is scored, and counted, in each), the pair completeness against the truth,
and the candidates found. Where
``n <= --all-pairs-max`` it also runs :func:`~oda_fed.matching.dice_candidates` over all pairs
and prints its time, its candidates, and the share of them the blocked run kept (all pairs and
true pairs). Times are single runs after a warm-up on a small input; the machines are shared
and noisy, so read them as indications and compare within one run. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import numpy as np

from oda_fed.encoding import default_field_encoding, encode_records
from oda_fed.matching import Candidates, dice_candidates
from oda_fed.matching.blocking import (
    auto_params,
    blocked_candidates,
    blocked_dice_candidates,
    estimate_fill,
)
from oda_fed.standardise import standardise_column
from oda_fed.synth import generate

FIELDS = {
    "first_name": "name",
    "last_name": "name",
    "date_of_birth": "date_of_birth",
    "sex": "sex",
    "postcode": "postcode",
}
SECRET = b"benchmark linkage secret, 32 b!"


def realistic_pair(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CLKs of the first ``n`` records of two partners, and the true pairs' ``(left, right)``."""
    # About half the population appears in the smaller partner's extract; ask for enough.
    data = generate(population=max(2 * n + 2000, 4000), partners=2, seed=seed, errors="medium")
    fields = [default_field_encoding(name, kind) for name, kind in FIELDS.items()]
    person_of_record = dict(zip(data.truth["record_id"], data.truth["person_id"], strict=True))
    sides, people = [], []
    for profile in data.profiles:
        frame = data.partners[profile.id].iloc[:n]
        if len(frame) < n:
            raise SystemExit(f"the synthetic partner {profile.id} has only {len(frame):,} records")
        table = {}
        for name, kind in FIELDS.items():
            fmt = profile.date_format if kind == "date_of_birth" else None
            clean, _invalid = standardise_column(frame[profile.columns[name]], kind, fmt=fmt)
            table[name] = clean.tolist()
        sides.append(encode_records(table, fields=fields, secret=SECRET, context="lsh-bench"))
        people.append(np.array([person_of_record[r] for r in frame[profile.record_id_column]]))
    left, right = _same_person(people[0], people[1])
    return sides[0], sides[1], left, right


def _same_person(pa: np.ndarray, pb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(i, j)`` with ``pa[i] == pb[j]``."""
    _, ia = np.unique(pa, return_inverse=True)
    codes = {p: c for c, p in enumerate(np.unique(pa))}
    ib = np.array([codes.get(p, -1) for p in pb], dtype=np.int64)
    order_b = np.argsort(ib, kind="stable")
    sorted_b = ib[order_b]
    lefts, rights = [], []
    for i, code in enumerate(ia):
        lo, hi = np.searchsorted(sorted_b, [code, code + 1])
        lefts.extend([i] * (hi - lo))
        rights.extend(order_b[lo:hi].tolist())
    return np.array(lefts, dtype=np.int64), np.array(rights, dtype=np.int64)


def _pair_set(found: Candidates) -> set[tuple[int, int]]:
    return set(zip(found.left.tolist(), found.right.tolist(), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="records a side, comma-separated")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--all-pairs-max", type=int, default=100_000, help="largest all-pairs n")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{numba.get_num_threads()} Numba threads; realistic 1024-bit CLKs, medium errors, "
        f"threshold {args.threshold}"
    )
    warm_a, warm_b, _, _ = realistic_pair(500, seed=args.seed)
    blocked_dice_candidates(warm_a, warm_b, threshold=args.threshold)
    dice_candidates(warm_a, warm_b, threshold=args.threshold)
    for n in sizes:
        started = time.perf_counter()
        a, b, t_left, t_right = realistic_pair(n, seed=args.seed)
        made = time.perf_counter() - started
        fill = estimate_fill(a, b)
        params = auto_params(threshold=args.threshold, fill=fill, bits=64 * a.shape[1])
        print(
            f"\nn = {n:,} a side ({len(t_left):,} true pairs; data made in {made:.1f}s); "
            f"fill {fill:.3f} -> bands {params.bands}, bits per band {params.bits_per_band}"
        )
        start = time.perf_counter()
        blocked, stats = blocked_candidates(
            a, b, threshold=args.threshold, params=params, truth=(t_left, t_right)
        )
        t_blocked = time.perf_counter() - start
        print(
            f"  blocked + Dice  {t_blocked:8.2f}s  scored {stats.pairs_compared:,} of "
            f"{stats.pairs_total:,} pairs (repeats across bands counted): reduction ratio >= "
            f"{stats.reduction_ratio:.6f}, pair completeness {stats.pair_completeness:.4f}, "
            f"largest block {stats.largest_block:,} pairs; candidates {len(blocked):,}"
        )
        if n > args.all_pairs_max:
            print("  all pairs       skipped (n > --all-pairs-max)")
            continue
        start = time.perf_counter()
        full = dice_candidates(a, b, threshold=args.threshold)
        t_full = time.perf_counter() - start
        got, want = _pair_set(blocked), _pair_set(full)
        truth = set(zip(t_left.tolist(), t_right.tolist(), strict=True))
        true_want = want & truth
        subset = "yes" if got <= want else "NO"
        print(
            f"  all pairs       {t_full:8.2f}s  candidates {len(full):,}; blocked kept "
            f"{len(got & want) / max(len(want), 1):.4f} of them and "
            f"{len(got & true_want) / max(len(true_want), 1):.4f} of the true ones among them "
            f"(subset: {subset})"
        )


if __name__ == "__main__":
    main()
