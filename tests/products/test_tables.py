"""partner_count_by_area and ProductTable on a hand-made example with known counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oda_fed.disclosure import CellDecision, DisclosureRules, control_counts
from oda_fed.errors import OdaFedError
from oda_fed.products import ProductError, ProductTable, partner_count_by_area

EXACT_ROWS = [
    ["W1", 1, 1],
    ["W1", 2, 1],
    ["W1", 3, 1],
    ["W2", 1, 2],
    ["W2", 2, 1],
    ["W2", 3, 0],
    ["area not known", 1, 2],
    ["area not known", 2, 1],
    ["area not known", 3, 1],
]


def _build(**overrides: object) -> ProductTable:
    kwargs: dict[str, object] = {
        "entity_partners": pd.Series([1, 2], index=["a", "b"]),
        "entity_area": pd.Series(["W1"], index=["a"]),
        "product_id": "p",
        "title": "t",
        "rules": DisclosureRules(),
        "n_partners": 2,
    }
    kwargs.update(overrides)
    return partner_count_by_area(**kwargs)  # type: ignore[arg-type]


def test_exact_counts_with_unknown_area_and_zero_rows(exact_product: ProductTable) -> None:
    table = exact_product.table
    assert list(table.columns) == ["area", "partners", "count", "suppressed"]
    assert table[["area", "partners", "count"]].values.tolist() == EXACT_ROWS
    # Every entity is counted exactly once.
    assert int(table["count"].sum()) == 10
    assert exact_product.suppressed_cells == 0
    assert table.index.tolist() == list(range(9))


def test_controlled_counts_suppress_small_and_zero_cells(controlled_product: ProductTable) -> None:
    table = controlled_product.table
    published = {(a, p): c for a, p, c in table[["area", "partners", "count"]].values.tolist()}
    assert published[("area not known", 1)] == 2
    assert published[("W2", 3)] is pd.NA  # the zero row is present, and suppressed
    assert controlled_product.suppressed_cells == 8
    assert table["suppressed"].tolist() == [True, True, True, True, True, True, False, True, True]
    assert controlled_product.rules == DisclosureRules(min_cell=2, rounding_base=1)


def test_the_area_partners_row_total_cannot_give_a_small_cell_back(
    controlled_product: ProductTable,
) -> None:
    """W2 holds 2, 1 and 0 entities known to 1, 2 and 3 partners. The partner holding the area
    knows its 3 records there, so publishing the 2 would leave the two suppressed cells adding up
    to 1: both would be given away. The 2 is suppressed as their complement."""
    report = controlled_product.report
    decisions = {dict(c.coordinates)["partners"]: c.decision for c in report.cells
                 if dict(c.coordinates)["area"] == "W2"}  # fmt: skip
    assert decisions == {
        "1": CellDecision.SUPPRESSED_SECONDARY,
        "2": CellDecision.SUPPRESSED_PRIMARY,
        "3": CellDecision.SUPPRESSED_PRIMARY,
    }
    # The not-known row mixes entities the area partner does not hold: no one knows its total.
    assert not any("area not known" in label for label in report.exposed)


def test_dtypes(controlled_product: ProductTable) -> None:
    table = controlled_product.table
    assert str(table["count"].dtype) == "Int64"
    assert table["partners"].dtype == np.dtype(np.int64)
    assert table["suppressed"].dtype == np.dtype(bool)
    assert all(isinstance(a, str) for a in table["area"].tolist())


def test_unknown_area_rows_exist_even_when_every_entity_has_an_area() -> None:
    product = _build(
        entity_partners=pd.Series([1, 2], index=["a", "b"]),
        entity_area=pd.Series(["W1", "W1"], index=["a", "b"]),
        rules=DisclosureRules(min_cell=0, rounding_base=1),
    )
    assert product.table[["area", "partners", "count"]].values.tolist() == [
        ["W1", 1, 1],
        ["W1", 2, 1],
        ["area not known", 1, 0],
        ["area not known", 2, 0],
    ]


def test_declared_areas_give_rows_to_areas_without_entities() -> None:
    product = _build(areas=["W3", "W1"], rules=DisclosureRules(min_cell=0, rounding_base=1))
    assert product.table["area"].tolist() == ["W1", "W1", "W3", "W3"] + ["area not known"] * 2
    assert product.table["count"].tolist() == [1, 0, 0, 0, 0, 1]


def test_custom_unknown_label_and_numeric_area_codes() -> None:
    product = _build(
        entity_area=pd.Series([101], index=["a"]),
        unknown_area="no ward",
        rules=DisclosureRules(min_cell=0, rounding_base=1),
    )
    assert product.table["area"].tolist() == ["101", "101", "no ward", "no ward"]


def test_default_rules_round_and_suppress() -> None:
    ids = [f"e{i}" for i in range(40)]
    partners = pd.Series([1] * 23 + [2] * 17, index=ids)
    area = pd.Series(["W1"] * 40, index=ids)
    product = _build(entity_partners=partners, entity_area=area)
    assert product.table["count"].tolist() == [25, 15, pd.NA, pd.NA]


def test_no_entities_gives_a_fully_suppressed_table() -> None:
    product = _build(
        entity_partners=pd.Series([], dtype=np.int64),
        entity_area=pd.Series([], dtype=object),
    )
    assert product.table["area"].tolist() == ["area not known"] * 2
    assert product.suppressed_cells == 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"entity_partners": pd.Series([1, 2], index=["a", "a"])},
        {"entity_partners": pd.Series([1, 3], index=["a", "b"])},
        {"entity_partners": pd.Series([0, 1], index=["a", "b"])},
        {"entity_partners": pd.Series([1.0, 2.0], index=["a", "b"])},
        {"entity_area": pd.Series(["W1"], index=["zz"])},
        {"entity_area": pd.Series(["W1", "W2"], index=["a", "a"])},
        {"entity_area": pd.Series(["area not known"], index=["a"])},
        {"areas": ["W2"]},
        {"n_partners": 0},
        {"product_id": "../escape"},
        {"product_id": ".hidden"},
        {"product_id": ""},
    ],
)
def test_bad_inputs_raise_typed_errors(overrides: dict[str, object]) -> None:
    with pytest.raises(ProductError) as info:
        _build(**overrides)
    assert isinstance(info.value, OdaFedError)
    assert isinstance(info.value, ValueError)


def test_errors_do_not_name_entity_ids() -> None:
    with pytest.raises(ProductError) as info:
        _build(entity_area=pd.Series(["W1"], index=["secret-entity-42"]))
    assert "secret-entity-42" not in str(info.value)


def test_product_table_rejects_an_uncontrolled_table() -> None:
    raw = pd.DataFrame({"area": ["W1"], "partners": [1], "count": [12]})
    with pytest.raises(ProductError):
        ProductTable(
            product_id="p", title="t", table=raw, rules=DisclosureRules(), suppressed_cells=0
        )
    unrounded = raw.assign(count=pd.array([12], dtype="Int64"), suppressed=[False])
    with pytest.raises(ProductError):
        ProductTable(
            product_id="p", title="t", table=unrounded, rules=DisclosureRules(), suppressed_cells=0
        )
    controlled = control_counts(raw, rules=DisclosureRules())
    with pytest.raises(ProductError):
        ProductTable(
            product_id="p", title="t", table=controlled, rules=DisclosureRules(), suppressed_cells=1
        )
    ok = ProductTable(
        product_id="p", title="t", table=controlled, rules=DisclosureRules(), suppressed_cells=0
    )
    assert ok.table["count"].tolist() == [10]
