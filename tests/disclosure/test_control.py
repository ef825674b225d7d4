"""control_table and its disclosure report: every decision, reasons an approver can read, and no
true count or cell key anywhere in what it returns."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oda_fed.disclosure import (
    CellDecision,
    CellDefinition,
    ControlledTable,
    DisclosureError,
    DisclosureRules,
    LedgerHold,
    ReleaseLedger,
    control_table,
    known_totals,
)

RULES = DisclosureRules(min_cell=10, rounding_base=5)


def _cells() -> pd.DataFrame:
    # W1: a small cell, so its smallest neighbour is a complement. W2: a held cell (and so a
    # complement too). W3: nothing suppressed.
    return pd.DataFrame(
        {
            "area": ["W1"] * 3 + ["W2"] * 3 + ["W3"] * 3,
            "partners": [1, 2, 3] * 3,
            "count": [7, 123, 1234, 477, 95, 2001, 60, 61, 1000],
        }
    )


def _hold(position: int) -> LedgerHold:
    definition = CellDefinition.of("p", coordinates={"position": position})
    return LedgerHold(position, definition, "2026-05", False, RULES.min_cell)


def _control_keyed(cells: pd.DataFrame, keys: np.ndarray) -> ControlledTable:
    """Rows protected, cell 3 held, rounded by ``keys``."""
    return control_table(
        cells,
        rules=RULES,
        dimensions=["area", "partners"],
        cell_keys=keys,
        known_totals=known_totals(cells, by=["area"]),
        holds=[_hold(3)],
    )


def test_every_decision_is_reported_with_a_reason() -> None:
    cells = _cells()
    out = _control_keyed(cells, np.array([0.5, 0.1, 0.9, 0.5, 0.5, 0.95, 0.5, 0.1, 0.5]))
    decisions = [c.decision for c in out.report.cells]
    assert decisions == [
        CellDecision.SUPPRESSED_PRIMARY,
        CellDecision.SUPPRESSED_SECONDARY,
        CellDecision.ROUNDED,
        CellDecision.HELD,
        CellDecision.SUPPRESSED_SECONDARY,
        CellDecision.ROUNDED,
        CellDecision.RELEASED,
        CellDecision.ROUNDED,
        CellDecision.RELEASED,
    ]
    assert out.table["count"].tolist() == [pd.NA, pd.NA, 1230, pd.NA, pd.NA, 2000, 60, 65, 1000]
    assert [c.published for c in out.report.cells] == [
        None if pd.isna(v) else v for v in out.table["count"].tolist()
    ]
    reasons = [c.reason for c in out.report.cells]
    assert reasons[0] == "below 10"
    assert reasons[1] == "complement for area=W1"
    assert reasons[3] == "held: differs from its release 2026-05 by fewer than 10"
    assert reasons[4] == "complement for area=W2"
    assert reasons[2] == "rounded by its cell key to a multiple of 5"
    assert out.report.cells[0].coordinates == (("area", "W1"), ("partners", "1"))
    assert out.report.tally() == {
        CellDecision.RELEASED: 2,
        CellDecision.ROUNDED: 3,
        CellDecision.SUPPRESSED_PRIMARY: 1,
        CellDecision.SUPPRESSED_SECONDARY: 2,
        CellDecision.HELD: 1,
    }
    assert out.held.tolist() == [False, False, False, True] + [False] * 5
    assert out.report.keyed and out.report.exposed == ()


def test_nothing_returned_quotes_a_true_count_or_a_key() -> None:
    cells = _cells()
    out = _control_keyed(cells, np.array([0.987654321] * 9))
    text = repr(out.report) + out.table.to_csv()
    for secret in ("1234", "477", "2001", "0.98"):
        assert secret not in text
    assert list(out.table.columns) == ["area", "partners", "count", "suppressed"]


def test_without_keys_or_totals_it_is_control_counts_plus_a_report() -> None:
    cells = _cells()
    out = control_table(cells, rules=RULES, dimensions=["area", "partners"])
    assert out.table["count"].tolist() == [pd.NA, 125, 1235, 475, 95, 2000, 60, 60, 1000]
    assert not out.report.keyed
    assert out.report.cells[1].reason == "rounded half up to a multiple of 5"


def test_exposed_totals_are_named_in_the_report() -> None:
    cells = pd.DataFrame({"area": ["W1", "W1", "W2", "W2"], "count": [3, 4, 40, 50]})
    out = control_table(
        cells, rules=RULES, dimensions=["area"], known_totals=known_totals(cells, by=["area"])
    )
    assert out.report.exposed == ("area=W1",)


def test_a_hold_outside_the_table_is_refused() -> None:
    with pytest.raises(DisclosureError):
        control_table(_cells(), rules=RULES, dimensions=["area"], holds=[_hold(9)])


def test_the_ledger_records_what_control_table_decided(tmp_path: Path) -> None:
    cells = _cells()
    definitions = [
        CellDefinition.of("p", coordinates={"area": a, "partners": p})
        for a, p in cells[["area", "partners"]].itertuples(index=False, name=None)
    ]
    with ReleaseLedger(tmp_path / "ledger.sqlite") as ledger:
        ledger.record("r1", definitions=definitions, counts=cells["count"], published=[None] * 9)
        changed = cells["count"].to_numpy() + np.array([0, 0, 0, 1, 0, 0, 0, 0, 0])
        holds = ledger.check(definitions, changed, min_cell=RULES.min_cell)
        out = control_table(
            cells.assign(count=changed),
            rules=RULES,
            dimensions=["area", "partners"],
            known_totals=known_totals(cells, by=["area"]),
            holds=holds,
        )
        ledger.record(
            "r2",
            definitions=definitions,
            counts=changed,
            published=out.table["count"],
            held=out.held,
        )
        assert [h.position for h in holds] == [3]
        # r2's held cell is not compared with: one more than r1's is still close, to r1.
        later = {
            h.position: h.earlier_round for h in ledger.check(definitions, changed + 1, min_cell=10)
        }
        assert later[3] == "r1" and later[0] == "r2"


@pytest.mark.parametrize(
    "module", ["cellkey", "control", "counts", "ledger", "report", "rules", "secondary"]
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"oda_fed.disclosure.{module}"))
    assert result.failed == 0
