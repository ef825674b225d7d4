"""Disclosure control at the coordinator, across rounds: the key its rounding uses, the release
ledger, and the cells held because an earlier release is too close to them.

- Rounding is keyed by a secret only the coordinator holds (``state_dir/disclosure.key``), on each
  cell's definition and true count (:func:`oda_fed.disclosure.definition_keys`): the same count of
  the same cell is always published the same way, so repeated releases cannot be averaged, and
  which way a count went cannot be worked out from the rule.
- Every product is checked against the project's release ledger before it is made. A cell whose
  true count moved by less than ``min_cell`` since an earlier release is held (suppressed, with its
  complements), and the round waits for an operator whatever ``auto_release`` says, with a message
  naming the cells.
- A round's cells are written to the ledger when the round is released, not before: a cancelled
  round's products were never published, so they are no baseline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from oda_fed.coordinator.state import CoordinatorState
from oda_fed.disclosure import (
    CellDefinition,
    DisclosureRules,
    KnownTotal,
    ReleaseLedger,
    definition_keys,
)
from oda_fed.durable import write_atomic
from oda_fed.pki import new_secret, read_secret
from oda_fed.products import ProductTable
from oda_fed.products.tables import controlled_product
from oda_fed.transport.protocol import COORDINATOR, AuditKind

log = logging.getLogger(__name__)

#: The file, in the coordinator's state folder, of the secret that keys rounding.
KEY_FILE = "disclosure.key"
#: The folder, in the state folder, of each round's cells until the round is released.
PENDING = "pending-releases"


def disclosure_key(state_dir: Path) -> bytes:
    """The coordinator's rounding key, made (mode 0600) the first time it is needed.

    Keep it with the rest of the state folder: a new key re-draws every cell's rounding.
    """
    path = Path(state_dir) / KEY_FILE
    if not path.exists():
        new_secret(path)
    return read_secret(path)


@dataclass(frozen=True)
class Controlled:
    """A product under disclosure control, and what the ledger held in it (one line a cell)."""

    product: ProductTable
    held: list[str]


def control(
    state: CoordinatorState,
    round_id: str,
    *,
    product_id: str,
    title: str,
    counts: str,
    cells: pd.DataFrame,
    known: list[KnownTotal],
    unknown_area: str | None = None,
    cohort: Mapping[str, list[str]] | None = None,
    part: str = "",
) -> Controlled:
    """Put a product's true ``cells`` through disclosure control, against the ledger.

    ``counts`` says what the cells count, whatever the product is called (two products counting
    the same thing are the same cells to the ledger), e.g. ``partners_by_area/council.ward``;
    ``cohort``, which entities (attribute to the values allowed). ``part`` names one of a
    product's tables (a rate's ``numerator`` or ``denominator``).

    The product's disclosure report is written beside it, for the operator
    (``<product>[.<part>].disclosure.csv``), and its decisions are counted in the audit log.
    """
    rules = DisclosureRules(
        min_cell=state.project.min_cell(),
        rounding_base=state.project.disclosure.rounding_base,
    )
    dims = [c for c in cells.columns if c != "count"]
    definitions = [
        CellDefinition.of(counts, coordinates=dict(zip(dims, row, strict=True)), cohort=cohort)
        for row in cells[dims].itertuples(index=False, name=None)
    ]
    true = cells["count"].to_numpy()
    keys = definition_keys([d.key for d in definitions], true, secret=state.disclosure_key)
    with ReleaseLedger(state.ledger_path) as ledger:
        holds = ledger.check(definitions, true, min_cell=rules.min_cell)
    product = controlled_product(
        cells,
        product_id=product_id,
        title=title,
        rules=rules,
        cell_keys=keys,
        known=known,
        holds=holds,
        unknown_area=unknown_area,
    )
    _keep_until_release(state, round_id, counts=counts, cohort=cohort, cells=cells, product=product)
    _report(state, round_id, product, name=".".join(filter(None, (product_id, part))))
    held = [
        f"{product_id} ({', '.join(f'{k}={v}' for k, v in h.definition.coordinates)}): {h.reason}"
        for h in holds
    ]
    return Controlled(product=product, held=held)


def _report(state: CoordinatorState, round_id: str, product: ProductTable, *, name: str) -> None:
    """Every decision disclosure control made: in full for the operator, counted in the log."""
    report = product.report
    assert report is not None  # control_table always reports
    frame = report.to_frame()
    path = state.output_dir / round_id / f"{name}.disclosure.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    state.crossings.record(
        sender=COORDINATOR,
        recipient=COORDINATOR,
        kind=AuditKind.DISCLOSURE_CHECKED,
        round_id=round_id,
        detail={
            "product": name,
            **{d.name.lower(): n for d, n in report.tally().items()},
            "exposed": len(report.exposed),
        },
    )


def record_release(state: CoordinatorState, round_id: str) -> None:
    """Write a released round's cells to the ledger: every later release is checked against
    them. Safe to call again (a round already recorded is not recorded twice)."""
    path = _pending(state, round_id)
    if not path.exists():
        return
    definitions, counts, published, held = [], [], [], []
    for counted, kept in json.loads(path.read_text()).items():
        for coordinates, count, shown, was_held in kept["cells"]:
            definitions.append(
                CellDefinition.of(counted, coordinates=coordinates, cohort=kept["cohort"])
            )
            counts.append(count)
            published.append(shown)
            held.append(was_held)
    with ReleaseLedger(state.ledger_path) as ledger:
        if round_id not in ledger.rounds():
            ledger.record(
                round_id, definitions=definitions, counts=counts, published=published, held=held
            )
    path.unlink()
    log.info("round %s: %d released cells written to the ledger", round_id, len(definitions))


def drop_pending(state: CoordinatorState, round_id: str) -> None:
    """Forget the cells of a round that ended without a release."""
    _pending(state, round_id).unlink(missing_ok=True)


def _pending(state: CoordinatorState, round_id: str) -> Path:
    return state.state_dir / PENDING / f"{round_id}.json"


def _keep_until_release(
    state: CoordinatorState,
    round_id: str,
    *,
    counts: str,
    cohort: Mapping[str, list[str]] | None,
    cells: pd.DataFrame,
    product: ProductTable,
) -> None:
    """Keep the cells' true counts, what will be published and what was held, until release."""
    path = _pending(state, round_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(path.read_text()) if path.exists() else {}
    dims = [c for c in cells.columns if c != "count"]
    published = product.table["count"]
    held = product.held if product.held is not None else [False] * len(cells)
    kept[counts] = {
        "cohort": dict(cohort or {}),
        "cells": [
            [
                {d: _plain(row[d]) for d in dims},
                int(row["count"]),
                None if pd.isna(shown) else int(shown),
                bool(was_held),
            ]
            for (_, row), shown, was_held in zip(cells.iterrows(), published, held, strict=True)
        ],
    }
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(kept, sort_keys=True)))


def _plain(value: object) -> object:
    """A cell coordinate as JSON keeps it (numpy integers become ints)."""
    return value.item() if hasattr(value, "item") else value
