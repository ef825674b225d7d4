"""What happens between the demo's two rounds, and what each round showed.

Between the rounds the partners refresh their extracts (:func:`refresh_extracts`); after each,
the demo reads back what the parties were left with: the cells the release ledger held
(:func:`held_cells`) and the rows of each list or alert that each node received
(:func:`records_received`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.disclosure import CellDecision
from oda_fed.synth import Synthetic
from oda_fed.synth.events import END, make_events, write_events
from oda_fed.synth.project import TABLES_AT

__all__ = [
    "CLOSED_RECORDS",
    "Changes",
    "Held",
    "held_cells",
    "records_received",
    "refresh_extracts",
]


#: Records the council closes between the rounds: fewer than the project's min_cell, so the
#: release ledger holds the cells they change.
CLOSED_RECORDS = 3


@dataclass(frozen=True)
class Changes:
    """What the partners changed in their data between the demo's rounds.

    Attributes
    ----------
    new_events
        Partner id to the events its refreshed table has that the first did not.
    closed
        The council's record ids it closed (residents who moved away).
    ward
        The ward those residents lived in.
    """

    new_events: dict[str, int]
    closed: list[str]
    ward: str


@dataclass(frozen=True)
class Held:
    """A cell the release ledger held in a round, as its disclosure report names it, and what
    the released file shows in its place."""

    product: str
    report: str  # the disclosure report, e.g. ``<product>.denominator.disclosure.csv``
    cell: dict[str, str]
    reason: str
    published: str


def refresh_extracts(workdir: Path, synthetic: Synthetic, *, seed: int) -> Changes:
    """Change the partners' data as a month passes between rounds: each event table is
    extracted again to the end of the history, and the council closes :data:`CLOSED_RECORDS`
    records of residents of one ward who moved away (people no other partner knows).

    The demo picks those records with the truth, which no partner holds, so that what the
    release ledger holds is plain to see: they change a count of council-only residents of one
    ward by fewer than ``min_cell``.
    """
    data = workdir / "data"
    before = make_events(synthetic, seed=seed, until=TABLES_AT)
    after = make_events(synthetic, seed=seed, until=END)
    council = next(p for p in synthetic.profiles if p.id == "council")
    extract = synthetic.partners[council.id]
    id_column, ward_column = council.record_id_column, council.attributes["ward"]
    truth = synthetic.truth
    partners_of = truth.groupby("person_id")["source"].nunique()
    alone = truth[(truth.source == council.id) & (truth.person_id.map(partners_of) == 1)]
    candidates = extract[extract[id_column].isin(alone.record_id) & (extract[ward_column] != "")]
    # The ward with the most of them (the first such code), so that the cell they change stays
    # above min_cell and the ledger's hold is what keeps it from being published.
    counts = candidates[ward_column].value_counts()
    ward = str(counts[counts == counts.max()].sort_index().index[0])
    in_ward = candidates[candidates[ward_column] == ward][id_column].to_numpy()
    rng = np.random.default_rng(seed)
    closed = sorted(str(r) for r in rng.choice(in_ward, size=CLOSED_RECORDS, replace=False))

    extract[~extract[id_column].isin(closed)].to_csv(
        data / f"{council.id}.csv", index=False, lineterminator="\n", encoding="utf-8"
    )
    after[council.id] = after[council.id][~after[council.id][id_column].isin(closed)]
    write_events(after, data)
    return Changes(
        new_events={p: len(after[p]) - len(before[p]) for p in after}, closed=closed, ward=ward
    )


def held_cells(products: Path) -> list[Held]:
    """The cells the release ledger held in a round, from its disclosure reports (which hold
    true counts: for the approver, never published), with what the released file shows."""
    held = []
    for path in sorted(products.glob("*.disclosure.csv")):
        report = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "reason" not in report.columns:
            continue  # a list's or alert's report: counts of records, no cells
        rows = report[report.decision == CellDecision.HELD.value]
        if rows.empty:
            continue
        product = path.name.split(".")[0]
        released = pd.read_csv(products / f"{product}.csv", dtype=str, keep_default_na=False)
        value = "denominator" if ".denominator." in path.name else "count"
        coordinates = [c for c in report.columns if c not in ("decision", "reason", "published")]
        for _, row in rows.iterrows():
            cell = {c: row[c] for c in coordinates}
            match = (released[list(cell)] == pd.Series(cell)).all(axis=1)
            published = released.loc[match, value]
            held.append(
                Held(
                    product=product,
                    report=path.name,
                    cell=cell,
                    reason=row["reason"],
                    published=str(published.iloc[0]) if len(published) == 1 else "",
                )
            )
    return held


def records_received(workdir: Path, round_id: str, product_id: str) -> dict[str, int]:
    """Partner id to the rows of a list or alert its node received in a round (only the
    owner's node should have any)."""
    received = {}
    for node in sorted((workdir / "nodes").iterdir()):
        path = node / "state" / "releases" / round_id / product_id / f"{product_id}.csv"
        if path.exists():
            received[node.name] = len(pd.read_csv(path, dtype=str))
    return received
