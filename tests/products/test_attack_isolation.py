"""The dummy-record isolation attack, played by the partner that holds the ward.

The council gave each of 8 targets a ward of its own (a made-up code its domain's pattern lets
through) and 9 dummy records there, then read from one round's product whether each target was
known to another service: its ward's "known to 1 service" cell is 10 (published) when the target
is known to the council alone, and 9 (suppressed) when another service knows it too. Today that
worked for 8 of 8 targets. With the council's row totals treated as known (it knows its 10 records
in each made-up ward), the product must look the same either way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oda_fed.disclosure import DisclosureRules, control_counts, definition_keys
from oda_fed.products.tables import area_row_totals, controlled_product, partner_count_cells

RULES = DisclosureRules(min_cell=10, rounding_base=5)
TARGETS = 8
UNKNOWN = "area not known"


def population(
    known_elsewhere: list[bool], rng: np.random.Generator
) -> tuple[pd.Series, pd.Series]:
    """Entity -> partners knowing it, and entity -> ward (council's records only): a real
    population in 12 wards, plus each target and its 9 dummies in a made-up ward."""
    partners, wards = {}, {}
    for i in range(3000):
        partners[f"p{i}"] = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        if rng.random() < 0.8:
            wards[f"p{i}"] = f"E05{1 + i % 12:06d}"
    for t, elsewhere in enumerate(known_elsewhere):
        ward = f"E0599{t:04d}"
        partners[f"target{t}"] = 2 if elsewhere else 1
        wards[f"target{t}"] = ward
        for d in range(9):
            partners[f"dummy{t}-{d}"] = 1  # records of the council alone
            wards[f"dummy{t}-{d}"] = ward
    return pd.Series(partners), pd.Series(wards)


def fake_ward_rows(table: pd.DataFrame) -> list[list[object]]:
    rows = table[table.area.str.startswith("E0599")]
    return rows[["area", "partners", "count", "suppressed"]].astype(str).values.tolist()


def release(partners: pd.Series, wards: pd.Series, *, defended: bool) -> pd.DataFrame:
    cells = partner_count_cells(entity_partners=partners, entity_area=wards, n_partners=3)
    if not defended:
        return control_counts(cells, rules=RULES)
    keys = definition_keys(
        [f"{a}/{p}" for a, p in zip(cells.area, cells.partners, strict=True)],
        cells["count"].to_numpy(),
        secret=b"coordinator-only-secret-32-bytes",
    )
    product = controlled_product(
        cells,
        product_id="known_to_services",
        title="Known to services",
        rules=RULES,
        cell_keys=keys,
        known=area_row_totals(cells, unknown_area=UNKNOWN),
        unknown_area=UNKNOWN,
    )
    return product.table


def attack(table: pd.DataFrame) -> list[bool]:
    """The attacker's reading, per target: known elsewhere when its ward's "known to 1 service"
    cell is suppressed (9 dummies, without the target), not when it is published (10)."""
    return [
        bool(table[(table.area == f"E0599{t:04d}") & (table.partners == 1)].suppressed.iloc[0])
        for t in range(TARGETS)
    ]


def test_today_each_target_is_given_away() -> None:
    rng = np.random.default_rng(4)
    truth = [bool(b) for b in rng.integers(0, 2, TARGETS)]
    partners, wards = population(truth, np.random.default_rng(5))
    read = attack(release(partners, wards, defended=False))
    assert read == truth  # 8 of 8


def test_with_the_row_totals_protected_the_product_looks_the_same_either_way() -> None:
    for seed in range(5):
        truth = [bool(b) for b in np.random.default_rng(seed).integers(0, 2, TARGETS)]
        flipped = [not b for b in truth]
        tables = [
            release(*population(world, np.random.default_rng(99)), defended=True)
            for world in (truth, flipped)
        ]
        # Every made-up ward reads the same whether its target is known elsewhere or not, so the
        # attacker's reading is the same guess in both worlds: right in one, wrong in the other.
        assert fake_ward_rows(tables[0]) == fake_ward_rows(tables[1])
        assert attack(tables[0]) == attack(tables[1]) == [True] * TARGETS
