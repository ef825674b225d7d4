"""The release ledger on real SQLite files: canonical definitions, holds against every earlier
release, nested cohorts, whole transactions, and nothing below the cell on disk."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oda_fed.disclosure import (
    CellDefinition,
    DisclosureError,
    Overlap,
    ReleaseLedger,
    count_cells,
    record_keys,
)

PRODUCT = "partners_by_area/council.ward"


def _cell(area: str = "W1", partners: int = 3, **cohort: list[str]) -> CellDefinition:
    return CellDefinition.of(
        PRODUCT, coordinates={"area": area, "partners": partners}, cohort=cohort or None
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[ReleaseLedger]:
    with ReleaseLedger(tmp_path / "ledger.sqlite") as opened:
        yield opened


def test_definitions_are_canonical_whatever_the_order_or_type() -> None:
    a = CellDefinition.of(
        "p", coordinates={"partners": 2, "area": "W1"}, cohort={"age": ["b", "a"]}
    )
    b = CellDefinition.of(
        "p", coordinates={"area": "W1", "partners": "2"}, cohort={"age": ("a", "b")}
    )
    assert a == b and a.key == b.key
    assert a.frame == CellDefinition.of("p", coordinates={"area": "W1", "partners": 2}).key
    assert a.key != CellDefinition.of("q", coordinates={"area": "W1", "partners": 2}).key
    with pytest.raises(DisclosureError):
        CellDefinition.of("", coordinates={"area": "W1"})
    with pytest.raises(DisclosureError):
        CellDefinition("p", coordinates=(("area", "W1"), ("area", "W2")))


def test_a_small_nonzero_difference_is_held_and_a_large_or_zero_one_is_not(
    ledger: ReleaseLedger,
) -> None:
    cells = [_cell("W1"), _cell("W2"), _cell("W3"), _cell("W4")]
    ledger.record("r1", definitions=cells, counts=[477, 100, 50, 8], published=[475, 100, 50, None])
    holds = ledger.check(cells, [478, 100, 60, 9], min_cell=10)
    # W1 +1 and W4 +1 (suppressed at first: the threshold is an oracle too); W2 same, W3 +10.
    assert [(h.position, h.earlier_round, h.nested) for h in holds] == [
        (0, "r1", False),
        (3, "r1", False),
    ]
    assert holds[0].definition == cells[0]
    assert "477" not in holds[0].reason and "r1" in holds[0].reason


def test_every_earlier_release_counts_not_only_the_last(ledger: ReleaseLedger) -> None:
    cell = [_cell()]
    ledger.record("r1", definitions=cell, counts=[477], published=[475])
    ledger.record("r2", definitions=cell, counts=[487], published=[485])
    holds = ledger.check(cell, [476], min_cell=10)
    assert [h.earlier_round for h in holds] == ["r1"]
    # The most recent conflicting round is named.
    ledger.record("r3", definitions=cell, counts=[478], published=[480])
    assert [h.earlier_round for h in ledger.check(cell, [479], min_cell=10)] == ["r3"]


def test_held_releases_are_not_compared_with(ledger: ReleaseLedger) -> None:
    cell = [_cell()]
    ledger.record("r1", definitions=cell, counts=[477], published=[475])
    for k, round_id in enumerate(["r2", "r3", "r4"], start=1):
        assert ledger.check(cell, [477 + k], min_cell=10)
        ledger.record(round_id, definitions=cell, counts=[477 + k], published=[None], held=[True])
    # Ten more than the last release seen: released, though one more than the last held.
    assert ledger.check(cell, [487], min_cell=10) == []
    assert ledger.rounds() == ["r1", "r2", "r3", "r4"]


def test_nested_cohorts_are_compared_when_asked(ledger: ReleaseLedger) -> None:
    everyone = _cell()
    adults = _cell(age=["18-64", "65+"])
    older = _cell(age=["65+"])
    other_area = _cell("W2", age=["65+"])
    ledger.record("r1", definitions=[everyone], counts=[477], published=[475])
    assert ledger.check([adults, older], [470, 300], min_cell=10) == []
    holds = ledger.check(
        [adults, older, other_area], [470, 300, 474], min_cell=10, overlap=Overlap.NESTED
    )
    assert [(h.position, h.earlier_round, h.nested) for h in holds] == [(0, "r1", True)]
    # Within one release the narrower of a close nested pair is held.
    holds = ledger.check([adults, older], [300, 295], min_cell=10, overlap=Overlap.NESTED)
    assert [(h.position, h.earlier_round) for h in holds] == [(1, None)]
    assert "this release" in holds[0].reason
    # Overlapping without nesting is not covered.
    young = _cell(age=["0-17", "18-64"])
    assert ledger.check([young, adults], [300, 295], min_cell=10, overlap=Overlap.NESTED) == []


def test_a_release_is_stored_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ReleaseLedger(path) as ledger:
        ledger.record("r1", definitions=[_cell("W1")], counts=[40], published=[40])
        with pytest.raises(DisclosureError) as info:
            ledger.record(
                "r1", definitions=[_cell("W2"), _cell("W1")], counts=[7, 41], published=[None, 40]
            )
        assert "41" not in str(info.value) and "7" not in str(info.value)
    with ReleaseLedger(path) as ledger:
        # W2 of the failed release is not there; W1 of r1 still is.
        assert ledger.check([_cell("W2")], [8], min_cell=10) == []
        assert len(ledger.check([_cell("W1")], [41], min_cell=10)) == 1
        ledger.record("r1", definitions=[_cell("W2")], counts=[7], published=[None])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"counts": [1, 2], "published": [None]},
        {"counts": [-1], "published": [None]},
        {"counts": [1.5], "published": [None]},
        {"counts": [1], "published": [None, None]},
        {"counts": [1], "published": [None], "held": [True, False]},
    ],
)
def test_bad_records_are_refused(ledger: ReleaseLedger, kwargs: dict[str, object]) -> None:
    with pytest.raises(DisclosureError):
        ledger.record("r1", definitions=[_cell()], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(DisclosureError):
        ledger.record("r1", definitions=[_cell(), _cell()], counts=[1, 1], published=[None, None])


def test_another_file_is_refused_untouched(tmp_path: Path) -> None:
    other = tmp_path / "index.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('format', 'oda-fed linked index 1')")
    db.commit()
    db.close()
    with pytest.raises(DisclosureError):
        ReleaseLedger(other)
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database, just some text that is long enough to be read as a header")
    with pytest.raises(DisclosureError):
        ReleaseLedger(text)
    with pytest.raises(DisclosureError):
        ReleaseLedger(tmp_path / "no such folder" / "ledger.sqlite")
    tables = sqlite3.connect(other).execute("SELECT name FROM sqlite_master").fetchall()
    assert ("cells",) not in tables and ("releases",) not in tables


def test_the_file_holds_cells_and_counts_but_no_entity_ids(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    ids = [f"e{v:016x}" for v in rng.integers(0, 2**63, size=300)]
    people = pd.DataFrame({"area": rng.choice(["W1", "W2", "W3"], size=300), "partners": 2})
    counted = count_cells(
        people, dimensions=["area", "partners"], record_keys=record_keys(ids, secret=b"k" * 32)
    )
    cells = [
        CellDefinition.of(PRODUCT, coordinates=dict(zip(("area", "partners"), row, strict=True)))
        for row in counted.table[["area", "partners"]].itertuples(index=False, name=None)
    ]
    path = tmp_path / "ledger.sqlite"
    with ReleaseLedger(path) as ledger:
        counts = counted.table["count"].to_numpy()
        ledger.record("r1", definitions=cells, counts=counts, published=counts // 5 * 5)
    raw = path.read_bytes()
    assert not any(i.encode() in raw for i in ids)
    columns = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(cells)")}
    assert columns == {
        "release",
        "round_id",
        "definition",
        "frame",
        "true_count",
        "published",
        "held",
    }
