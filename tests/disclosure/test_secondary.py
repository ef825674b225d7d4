"""Secondary suppression: complements until no known total gives a suppressed cell away on its own,
over rows, columns and totals that span two products."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.disclosure import (
    DisclosureError,
    KnownTotal,
    Suppression,
    known_totals,
    secondary_suppression,
)


def _grid(counts: list[list[int]]) -> pd.DataFrame:
    """A rows x columns table of cells, one row per cell, row-major."""
    rows = [
        {"area": f"W{r}", "partners": c + 1, "count": v}
        for r, line in enumerate(counts)
        for c, v in enumerate(line)
    ]
    return pd.DataFrame(rows)


def _safe(total: KnownTotal, counts: np.ndarray, mask: np.ndarray, min_cell: int) -> bool:
    """The module's guarantee for one total, written out independently."""
    hidden = [(s, counts[c]) for c, s in zip(total.cells, total.signs, strict=True) if mask[c]]
    if not hidden:
        return True
    if len(hidden) == 1:
        return False
    if len({s for s, _ in hidden}) == 2:
        return True
    return sum(v for _, v in hidden) >= min_cell


def _by_rows(counts: list[list[int]], min_cell: int = 10) -> Suppression:
    """Suppress below ``min_cell`` and protect every row total."""
    cells = _grid(counts)
    return secondary_suppression(
        cells,
        primary=cells["count"].to_numpy() < min_cell,
        min_cell=min_cell,
        known_totals=known_totals(cells, by=["area"]),
    )


def test_one_suppressed_cell_in_a_row_gets_the_smallest_complement() -> None:
    result = _by_rows([[8, 40, 22, 22]])
    # 22 and 22 tie on count: the lower position wins.
    assert result.mask.tolist() == [True, False, True, False]
    assert result.secondary.tolist() == [False, False, True, False]
    assert result.protects.tolist() == [-1, -1, 0, -1]
    assert result.exposed == ()


def test_two_small_cells_that_add_up_to_less_than_min_cell_need_a_third() -> None:
    result = _by_rows([[3, 4, 30, 50]])
    assert result.mask.tolist() == [True, True, True, False]


def test_rows_and_columns_reach_a_fixed_point() -> None:
    counts = [
        [5, 30, 40],
        [25, 12, 60],
        [70, 80, 15],
    ]
    cells = _grid(counts)
    totals = known_totals(cells, by=["area"]) + known_totals(cells, by=["partners"])
    result = secondary_suppression(
        cells, primary=cells["count"].to_numpy() < 10, min_cell=10, known_totals=totals
    )
    values = cells["count"].to_numpy()
    assert all(_safe(t, values, result.mask, 10) for t in totals)
    # Row W0 takes 30 (its smallest), column 1 then takes 25 and column 2 takes 12, which also
    # completes row W1: a rectangle of four cells.
    assert np.flatnonzero(result.mask).tolist() == [0, 1, 3, 4]


def test_a_total_that_cannot_be_protected_is_reported_as_exposed() -> None:
    cells = _grid([[2, 3, 1], [40, 50, 60]])
    totals = known_totals(cells, by=["area"])
    result = secondary_suppression(
        cells, primary=cells["count"].to_numpy() < 10, min_cell=10, known_totals=totals
    )
    assert result.exposed == (0,)
    assert totals[0].label == "area=W0"
    assert result.mask.tolist() == [True, True, True, False, False, False]


def test_a_lone_held_cell_is_protected_even_without_a_threshold() -> None:
    cells = _grid([[477, 30, 40]])
    result = secondary_suppression(
        cells,
        primary=np.array([True, False, False]),
        min_cell=0,
        known_totals=known_totals(cells, by=["area"]),
    )
    assert result.mask.tolist() == [True, True, False]


def test_totals_spanning_two_products_are_protected() -> None:
    # Product a by ward, product b by district: district N is wards W1 and W2.
    cells = pd.DataFrame(
        {
            "product": ["a", "a", "a", "b", "b"],
            "area": ["W1", "W2", "W3", "N", "S"],
            "count": [8, 25, 40, 33, 40],
        }
    )
    totals = [
        KnownTotal.same_people([0, 1], [3], label="district N"),
        KnownTotal.same_people([2], [4], label="district S"),
    ]
    result = secondary_suppression(
        cells, primary=cells["count"].to_numpy() < 10, min_cell=10, known_totals=totals
    )
    # W2 (25) is smaller than N (33): the complement stays in product a.
    assert result.mask.tolist() == [True, True, False, False, False]
    assert result.protects[1] == 0


def test_a_mixed_sign_total_is_safe_with_one_hidden_cell_on_each_side() -> None:
    cells = pd.DataFrame({"count": [4, 50, 30]})
    total = KnownTotal(cells=(0, 1, 2), signs=(1, 1, -1), label="x")
    # 30 is the smallest free cell; with a hidden cell on each side, x - y = t bounds neither.
    result = secondary_suppression(
        cells, primary=np.array([True, False, False]), min_cell=10, known_totals=[total]
    )
    assert result.mask.tolist() == [True, False, True]


def test_known_totals_helper() -> None:
    cells = pd.DataFrame(
        {
            "product": ["p", "p", "q", "q"],
            "area": ["W1", "W2", "W1", "W2"],
            "count": [1, 2, 3, 4],
        }
    )
    assert [(t.cells, t.label) for t in known_totals(cells, by=["product", "area"])] == [
        ((0,), "product=p, area=W1"),
        ((1,), "product=p, area=W2"),
        ((2,), "product=q, area=W1"),
        ((3,), "product=q, area=W2"),
    ]
    assert [t.cells for t in known_totals(cells, by=["area"])] == [(0, 2), (1, 3)]
    assert known_totals(cells, by=[])[0].cells == (0, 1, 2, 3)
    with pytest.raises(DisclosureError):
        known_totals(cells, by=["ward"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cells": (0, 0)},
        {"cells": (0, -1)},
        {"cells": (0, 1), "signs": (1,)},
        {"cells": (0, 1), "signs": (1, 2)},
        {"cells": (True,)},
    ],
)
def test_bad_known_totals_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(DisclosureError):
        KnownTotal(**kwargs)  # type: ignore[arg-type]


def test_bad_inputs_are_refused() -> None:
    cells = pd.DataFrame({"count": [3, 40]})
    ok = {"primary": np.array([True, False]), "min_cell": 10, "known_totals": []}
    with pytest.raises(DisclosureError):
        secondary_suppression(cells, **{**ok, "primary": np.array([1, 0])})  # type: ignore[arg-type]
    with pytest.raises(DisclosureError):
        secondary_suppression(cells, **{**ok, "known_totals": [KnownTotal(cells=(0, 2))]})  # type: ignore[arg-type]
    with pytest.raises(DisclosureError):
        secondary_suppression(cells, **{**ok, "min_cell": -1})  # type: ignore[arg-type]
    with pytest.raises(DisclosureError):
        secondary_suppression(pd.DataFrame({"n": [1]}), **ok)  # type: ignore[arg-type]


@st.composite
def _tables(draw: st.DrawFn) -> tuple[pd.DataFrame, list[KnownTotal], int]:
    n_rows = draw(st.integers(1, 6))
    n_cols = draw(st.integers(1, 5))
    # Mostly small counts, so that suppression has work to do.
    value = st.one_of(st.integers(0, 12), st.integers(0, 80))
    counts = [[draw(value) for _ in range(n_cols)] for _ in range(n_rows)]
    cells = _grid(counts)
    totals = known_totals(cells, by=["area"])
    if draw(st.booleans()):
        totals += known_totals(cells, by=["partners"])
    if draw(st.booleans()):
        totals += known_totals(cells, by=[])
    n = len(cells)
    for _ in range(draw(st.integers(0, 3))):
        members = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
        signs = draw(
            st.lists(st.sampled_from([1, -1]), min_size=len(members), max_size=len(members))
        )
        totals.append(KnownTotal(cells=tuple(members), signs=tuple(signs), label="extra"))
    return cells, totals, draw(st.integers(0, 15))


@settings(max_examples=300, deadline=None)
@given(table=_tables(), held=st.lists(st.integers(0, 29), max_size=3))
def test_the_guarantee_holds_on_random_tables(
    table: tuple[pd.DataFrame, list[KnownTotal], int], held: list[int]
) -> None:
    cells, totals, min_cell = table
    counts = cells["count"].to_numpy()
    primary = counts < min_cell
    primary[[h for h in held if h < len(cells)]] = True
    result = secondary_suppression(cells, primary=primary, min_cell=min_cell, known_totals=totals)
    assert np.all(result.mask[primary])
    for i, total in enumerate(totals):
        if i in result.exposed:
            assert result.mask[list(total.cells)].all()
            assert not _safe(total, counts, result.mask, min_cell)
        else:
            assert _safe(total, counts, result.mask, min_cell)
    # Every complement names a total it belongs to.
    for cell in np.flatnonzero(result.secondary):
        assert cell in totals[result.protects[cell]].cells
    again = secondary_suppression(cells, primary=primary, min_cell=min_cell, known_totals=totals)
    np.testing.assert_array_equal(again.mask, result.mask)
