"""Event-table benchmark: the node derives an ``event_count`` and an ``event_latest`` attribute from
10M events of 1M people, read from a CSV on disk.

    .venv/bin/python benchmarks/events.py [--events 10000000] [--people 1000000]
                                          [--timestamps] [--chunk-mb 64] [--workdir DIR]
                                          [--seed 3] [--no-reference]

It writes, once per setting and kept in ``--workdir``: the extract's record ids (``--people``
people) and an event table of ``--events`` rows (an event id, the person's record id, the date,
one of four types and a short note; a fifth of the events belong to people outside the extract,
a few of the extract's people have none, a few events fall after the reference date). Dates are
``YYYY-MM-DD``, or with ``--timestamps`` ``YYYY-MM-DD HH:MM:SS``.

Each side then runs in a fresh process, which prints its time and its peak resident memory (its
own, less what it held before the step: the extract's ids and the libraries):

- **oda-fed**: :func:`oda_fed.node.events.derive_events`, both attributes in one pass,
  ``--chunk-mb`` MiB of the file at a time;
- **reference**: the obvious pandas version, the whole file at once (``read_csv`` of the three
  columns, ``to_datetime``, each event's person looked up in the extract, ``groupby``), then the
  same bands.

Both must give the same labels for every person before anything is reported. The machines are
shared and noisy: the time is one run, an indication. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

AT = dt.date(2026, 4, 1)
KINDS = ["asb", "burglary", "fire", "welfare"]
# The two attributes: incidents of two types in the year before AT, and days since the latest.
COUNT = {"name": "incidents_12m", "derive": "event_count", "window_days": 365,
         "event_types": ["asb", "burglary"], "bands": [0, 1, 3, 10]}  # fmt: skip
LATEST = {"name": "last_incident", "derive": "event_latest", "bands": [0, 30, 365, 1825]}


def make_data(root: Path, *, events: int, people: int, timestamps: bool, seed: int) -> Path:
    """The extract's ids and the event table as CSV files in a folder of their own."""
    folder = root / f"{events}x{people}-{'ts' if timestamps else 'day'}-{seed}"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # The extract's people, and as many again outside it who also have events.
    everyone = np.char.add("P", np.char.zfill(np.arange(2 * people).astype(str), 8))
    extract = rng.permutation(everyone[:people])
    pcsv.write_csv(pa.table({"person_ref": extract}), folder / "extract.csv")
    ids = pa.array(everyone.tolist())  # one array: from a NumPy str array Arrow may chunk it
    days = pa.array(
        [(AT - dt.timedelta(days=int(d))).isoformat() for d in np.arange(-60, 3650)]
    )  # a few events after AT
    kinds = pa.array(KINDS)
    notes = pa.array(["", "", "", "seen, then left", 'said "no"'])
    block = 1_000_000
    with pcsv.CSVWriter(
        folder / "events.csv",
        pa.schema(
            [
                ("event_ref", pa.int64()),
                ("person_ref", pa.string()),
                ("occurred", pa.string()),
                ("kind", pa.string()),
                ("notes", pa.string()),
            ]
        ),
    ) as out:
        for start in range(0, events, block):
            n = min(block, events - start)
            # Four in five events are of the extract's people, skewed so that some have many
            # and a few none.
            inside = rng.random(n) < 0.8
            who = np.where(
                inside,
                (rng.random(n) ** 2 * people).astype(np.int64),
                people + rng.integers(0, people, n),
            )
            when = days.take(pa.array(rng.integers(0, len(days), n)))
            if timestamps:
                clock = [
                    pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, top, n)), pa.string()), 2, "0")
                    for top in (24, 60, 60)
                ]
                when = pc.binary_join_element_wise(
                    when, pc.binary_join_element_wise(*clock, ":"), " "
                )
            batch = pa.record_batch(
                [
                    pa.array(np.arange(start, start + n)),
                    ids.take(pa.array(who)),
                    when,
                    kinds.take(pa.array(rng.integers(0, len(kinds), n))),
                    notes.take(pa.array(rng.integers(0, len(notes), n))),
                ],
                names=["event_ref", "person_ref", "occurred", "kind", "notes"],
            )
            out.write_batch(batch)
    (folder / "done").write_text("")
    return folder


def attributes():
    from oda_fed.config import Attribute

    common = {"partner": "police", "events": "incidents", "at": AT}
    return [Attribute.model_validate({**common, **a}) for a in (COUNT, LATEST)]


def ours(folder: Path, chunk_mb: int) -> dict[str, list[str]]:
    from oda_fed.config import EventTable
    from oda_fed.node.events import derive_events

    record_ids = pcsv.read_csv(folder / "extract.csv").column("person_ref").to_numpy()
    table = EventTable(
        name="incidents",
        path=folder / "events.csv",
        record_id="person_ref",
        date="occurred",
        type="kind",
    )
    chosen = attributes()
    return measured(
        lambda: (
            derive_events(
                table, attributes=chosen, record_ids=record_ids, chunk_bytes=chunk_mb << 20
            ).values
        )
    )


def reference(folder: Path) -> dict[str, list[str]]:
    """The obvious pandas version: everything in memory at once."""
    import pandas as pd

    from oda_fed.config import NO_EVENT, band_labels

    extract = pd.read_csv(folder / "extract.csv", dtype=str)["person_ref"]
    chosen = attributes()

    def derive() -> dict[str, list[str]]:
        frame = pd.read_csv(
            folder / "events.csv",
            dtype=str,
            usecols=["person_ref", "occurred", "kind"],
            keep_default_na=False,
        )
        frame["occurred"] = pd.to_datetime(frame["occurred"].str.slice(0, 10), format="%Y-%m-%d")
        rows = pd.Index(extract).get_indexer(frame["person_ref"].str.strip())
        frame = frame[rows >= 0].assign(row=rows[rows >= 0])
        at = pd.Timestamp(AT)
        out = {}
        for a in chosen:
            keep = frame["occurred"] <= at
            if a.window_days:
                keep &= frame["occurred"] > at - pd.Timedelta(days=a.window_days)
            if a.event_types:
                keep &= frame["kind"].str.strip().isin(a.event_types)
            labels = np.array(band_labels(a.bands), dtype=object)
            mine = frame[keep].groupby("row")["occurred"]
            if a.derive == "event_count":
                n = mine.size().reindex(range(len(extract)), fill_value=0).to_numpy()
                out[a.name] = labels[np.searchsorted(a.bands, n, side="right") - 1].tolist()
            else:
                latest = mine.max().reindex(range(len(extract)))
                since = (at - latest).dt.days.fillna(-1).astype(int).to_numpy()
                band = labels[np.searchsorted(a.bands, since, side="right") - 1]
                out[a.name] = np.where(since < 0, NO_EVENT, band).tolist()
        return out

    return measured(derive)


def measured(step) -> dict[str, list[str]]:
    """Run ``step``, print its time and peak memory as JSON, and return its result."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak": peak, "above": peak - before}))
    return result


def run(folder: Path, side: str, chunk_mb: int) -> tuple[dict, dict[str, list[str]]]:
    """One side in a fresh process: its figures, and its labels (read back from a file)."""
    with tempfile.TemporaryDirectory() as tmp:
        labels = Path(tmp) / "labels.json"
        out = subprocess.run(
            [sys.executable, __file__, "--child", side, str(folder), str(chunk_mb), str(labels)],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1]), json.loads(labels.read_text())


def child(side: str, folder: Path, chunk_mb: int, labels: Path) -> None:
    result = ours(folder, chunk_mb) if side == "oda-fed" else reference(folder)
    labels.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--timestamps", action="store_true", help="dates with a time of day")
    parser.add_argument("--chunk-mb", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="skip the pandas reference")
    parser.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        side, folder, chunk_mb, labels = args.child
        child(side, Path(folder), int(chunk_mb), Path(labels))
        return

    root = args.workdir or Path(tempfile.gettempdir()) / "oda-fed-bench-events"
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {os.cpu_count()} cores, Python {platform.python_version()}")
    started = time.perf_counter()
    folder = make_data(
        root, events=args.events, people=args.people, timestamps=args.timestamps, seed=args.seed
    )
    size = (folder / "events.csv").stat().st_size
    print(
        f"{args.events:,} events ({size / 2**20:,.0f} MiB of CSV, "
        f"{'timestamps' if args.timestamps else 'dates'}) of {args.people:,} people in the "
        f"extract and as many outside it; data in {folder} "
        f"(made in {time.perf_counter() - started:.0f} s, not counted)."
    )
    print(f"Attributes: {COUNT['name']} (event_count), {LATEST['name']} (event_latest), one pass.")
    print()
    figures, labels = run(folder, "oda-fed", args.chunk_mb)
    rows = [("oda-fed", f"derive_events, {args.chunk_mb} MiB at a time", figures)]
    if not args.no_reference:
        ref_figures, ref_labels = run(folder, "reference", args.chunk_mb)
        if ref_labels != labels:
            raise SystemExit("oda-fed and the pandas reference disagree: not reporting a speed")
        rows.append(("reference", "pandas, whole file in memory", ref_figures))
    print("| side | how | time | events/s | peak memory | above the extract |")
    print("| --- | --- | --- | --- | --- | --- |")
    for side, how, f in rows:
        print(
            f"| {side} | {how} | {f['seconds']:.1f} s | {args.events / f['seconds'] / 1e6:.2f}M | "
            f"{f['peak'] / 2**30:.2f} GiB | {f['above'] / 2**30:.2f} GiB |"
        )
    if len(rows) == 2:
        ref = rows[1][2]
        print()
        print(
            f"Ratios, reference over oda-fed: time {ref['seconds'] / figures['seconds']:.1f}x, "
            f"memory above the extract {ref['above'] / max(figures['above'], 1):.1f}x. Both gave "
            "the same labels to every person."
        )


if __name__ == "__main__":
    main()
