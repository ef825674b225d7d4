"""Disclosure-control benchmark: cell keys for 1M entities, and a 1M-entity cross-tabulation
controlled with secondary suppression, the ledger and a report.

    .venv/bin/python benchmarks/disclosure.py [--entities 1000000] [--areas 250] [--partners 4]
                                              [--repeat 3] [--seed 5]

The entities are opaque ids shaped as the linked index issues them (``e`` and 16 hex digits),
each with an area (``--areas`` wards of lognormal sizes, so some cells are small) and the number
of partners that know it (1 to ``--partners``, most known to one). The table is area by partners:
``--areas x --partners`` cells, 1,000 by default.

It prints the median time of ``--repeat`` runs of each step, and beside each its reference in the
same run:

- **record keys**: :func:`oda_fed.disclosure.record_keys` (HMAC-SHA256 from the two precomputed
  pad states) against ``hmac.digest`` called once per id, the obvious implementation; both give
  the same keys (checked);
- **count cells**: :func:`~oda_fed.disclosure.count_cells` (counts and cell keys over the full
  grid) against a pandas ``groupby().size()`` of the same grid without keys;
- **control**: :func:`~oda_fed.disclosure.control_table` with cell keys and the row and column
  totals as known totals (secondary suppression, report) against today's
  :func:`~oda_fed.disclosure.control_counts` (suppression and rounding half up only);
- **ledger**: :meth:`~oda_fed.disclosure.ReleaseLedger.check` then
  :meth:`~oda_fed.disclosure.ReleaseLedger.record` of the table against a ledger holding one
  earlier release of it (a real SQLite file in a temporary folder, synchronous writes).

It also prints what the control did: cells suppressed as small, as complements, held, and the
totals left exposed. The machines are shared and noisy; compare within one run. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from oda_fed.disclosure import (
    CellDecision,
    CellDefinition,
    DisclosureRules,
    ReleaseLedger,
    control_counts,
    control_table,
    count_cells,
    known_totals,
    record_keys,
)

SECRET = b"benchmark cell-key secret, 32 b!"
RULES = DisclosureRules(min_cell=10, rounding_base=5)
T = TypeVar("T")


def population(n: int, *, areas: int, partners: int, seed: int) -> pd.DataFrame:
    """``n`` entities with an id, an area and a number of partners."""
    rng = np.random.default_rng(seed)
    ids = np.char.add("e", np.char.zfill(np.char.mod("%x", rng.integers(0, 2**63, size=n)), 16))
    weights = rng.lognormal(sigma=1.2, size=areas)
    area = rng.choice(areas, size=n, p=weights / weights.sum())
    known_by = np.array([0.70, 0.20, 0.08, 0.02][:partners] + [0.0] * max(0, partners - 4))
    partner_count = rng.choice(np.arange(1, partners + 1), size=n, p=known_by / known_by.sum())
    return pd.DataFrame(
        {
            "entity_id": ids.tolist(),
            "area": np.char.add("W", np.char.zfill(area.astype(str), 4)),
            "partners": partner_count,
        }
    )


def timed(repeat: int, step: Callable[[], T]) -> tuple[float, T]:
    """Median wall time of ``repeat`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result  # type: ignore[return-value]


def hmac_reference(ids: list[str]) -> np.ndarray:
    """One ``hmac.digest`` per id: what a plain implementation would do."""
    digests = b"".join(hmac.digest(SECRET, i.encode(), hashlib.sha256)[:8] for i in ids)
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


def row(step: str, ours: str, reference: str = "-", ratio: str = "-") -> None:
    print(f"| {step} | {ours} | {reference} | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--areas", type=int, default=250)
    parser.add_argument("--partners", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {os.cpu_count()} cores, Python {platform.python_version()}")
    people = population(args.entities, areas=args.areas, partners=args.partners, seed=args.seed)
    ids = people["entity_id"].tolist()
    dims = ["area", "partners"]
    print(f"{len(people):,} entities, {args.areas} areas x {args.partners} partner counts.")
    print(f"min_cell {RULES.min_cell}, rounding base {RULES.rounding_base} by cell key.")
    print()
    row("step", "oda-fed", "reference", "ratio")
    row("---", "---", "---", "---")

    t_keys, keys = timed(args.repeat, lambda: record_keys(ids, secret=SECRET))
    t_ref, ref = timed(1, lambda: hmac_reference(ids))
    if not np.array_equal(keys, ref):
        raise SystemExit("record keys differ from hmac.digest: not reporting a speed")
    rate = len(ids) / t_keys / 1e6
    row(
        f"record keys ({rate:.2f}M ids/s)",
        f"{t_keys:.2f} s",
        f"{t_ref:.2f} s (hmac.digest per id)",
        f"{t_ref / t_keys:.1f}x",
    )

    t_count, counted = timed(
        args.repeat, lambda: count_cells(people, dimensions=dims, record_keys=keys)
    )
    t_group, _ = timed(args.repeat, lambda: people.groupby(dims).size())
    row(
        f"count cells with keys ({len(counted.table):,} cells)",
        f"{t_count:.2f} s",
        f"{t_group:.2f} s (groupby size, no keys)",
        f"{t_group / t_count:.2f}x",
    )

    cells = counted.table
    totals = known_totals(cells, by=["area"]) + known_totals(cells, by=["partners"])
    t_control, out = timed(
        args.repeat,
        lambda: control_table(
            cells,
            rules=RULES,
            dimensions=dims,
            cell_keys=counted.cell_keys,
            known_totals=totals,
        ),
    )
    t_today, _ = timed(args.repeat, lambda: control_counts(cells, rules=RULES))
    row(
        f"control: secondary suppression ({len(totals)} known totals), keyed rounding, report",
        f"{t_control * 1e3:.1f} ms",
        f"{t_today * 1e3:.1f} ms (control_counts, half up)",
        f"{t_today / t_control:.2f}x",
    )

    definitions = [
        CellDefinition.of("partners_by_area/bench", coordinates={"area": a, "partners": p})
        for a, p in cells[dims].itertuples(index=False, name=None)
    ]
    counts = cells["count"].to_numpy()
    published = out.table["count"]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledger.sqlite"
        with ReleaseLedger(path) as ledger:
            ledger.record("r0", definitions=definitions, counts=counts, published=published)
            rounds = iter(range(1, args.repeat + 1))
            everything = np.ones(len(counts), dtype=bool)

            def release() -> int:
                # Every cell one more than r0: all held, so each run compares with r0 alone.
                holds = ledger.check(definitions, counts + 1, min_cell=RULES.min_cell)
                ledger.record(
                    f"r{next(rounds)}",
                    definitions=definitions,
                    counts=counts + 1,
                    published=published,
                    held=everything,
                )
                return len(holds)

            t_ledger, held = timed(args.repeat, release)
        size = path.stat().st_size
    row(f"ledger check + record ({len(definitions):,} cells)", f"{t_ledger * 1e3:.1f} ms")
    t_total = t_keys + t_count + t_control + t_ledger
    row(f"**whole release from {len(people):,} entities**", f"**{t_total:.2f} s**")
    print()
    tally = out.report.tally()
    print(
        f"cells: {len(cells):,}; suppressed small "
        f"{tally.get(CellDecision.SUPPRESSED_PRIMARY, 0)}, complements "
        f"{tally.get(CellDecision.SUPPRESSED_SECONDARY, 0)}, rounded "
        f"{tally.get(CellDecision.ROUNDED, 0)}, as counted {tally.get(CellDecision.RELEASED, 0)}; "
        f"exposed totals {len(out.report.exposed)}."
    )
    print(
        f"ledger: held {held} of {len(cells):,} cells when every cell grew by one; "
        f"file {size / 1024:.0f} KiB after {args.repeat + 1} releases."
    )


if __name__ == "__main__":
    main()
