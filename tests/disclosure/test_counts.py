"""control_counts: suppression below the threshold, rounding half up, strict input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oda_fed.disclosure import DisclosureError, DisclosureRules, control_counts, round_half_up

RULES = DisclosureRules(min_cell=10, rounding_base=5)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240607)


def _control(counts: list[object], rules: DisclosureRules = RULES) -> pd.DataFrame:
    return control_counts(pd.DataFrame({"count": counts}), rules=rules)


def test_counts_below_threshold_are_suppressed_zero_included() -> None:
    out = _control([0, 1, 9])
    assert out["suppressed"].tolist() == [True, True, True]
    assert out["count"].isna().all()


def test_threshold_itself_is_published() -> None:
    out = _control([9, 10])
    assert out["suppressed"].tolist() == [True, False]
    assert out["count"].iloc[1] == 10


@pytest.mark.parametrize(
    ("raw", "published"),
    [(12, 10), (13, 15), (15, 15), (17, 15), (18, 20), (10, 10), (1002, 1000), (1003, 1005)],
)
def test_rounding_to_nearest_five(raw: int, published: int) -> None:
    assert _control([raw])["count"].iloc[0] == published


def test_halves_round_up_with_an_even_base() -> None:
    out = _control([14, 15, 25, 26], DisclosureRules(min_cell=0, rounding_base=10))
    assert out["count"].tolist() == [10, 20, 30, 30]


def test_base_one_and_min_cell_zero_publish_true_counts() -> None:
    out = _control([0, 3, 17], DisclosureRules(min_cell=0, rounding_base=1))
    assert out["count"].tolist() == [0, 3, 17]
    assert not out["suppressed"].any()


def test_output_types_index_and_other_columns_are_kept() -> None:
    table = pd.DataFrame(
        {"area": ["a", "b", "c"], "count": np.array([4, 23, 40], dtype=np.int32)},
        index=pd.Index([7, 8, 9], name="cell"),
    )
    out = control_counts(table, rules=RULES)
    assert str(out["count"].dtype) == "Int64"
    assert out["suppressed"].dtype == np.dtype(bool)
    assert list(out.columns) == ["area", "count", "suppressed"]
    assert out.index.equals(table.index)
    assert out["area"].tolist() == ["a", "b", "c"]
    assert out["count"].tolist() == [pd.NA, 25, 40]


def test_input_table_is_not_modified() -> None:
    table = pd.DataFrame({"count": [3, 12]})
    control_counts(table, rules=RULES)
    assert table["count"].tolist() == [3, 12]
    assert "suppressed" not in table.columns


def test_custom_count_column() -> None:
    table = pd.DataFrame({"n": [11, 2]})
    out = control_counts(table, rules=RULES, count_column="n")
    assert out["n"].tolist() == [10, pd.NA]


def test_integer_valued_floats_and_nullable_ints_are_accepted() -> None:
    assert _control([12.0, 3.0])["count"].tolist() == [10, pd.NA]
    table = pd.DataFrame({"count": pd.array([12, 3], dtype="Int64")})
    assert control_counts(table, rules=RULES)["count"].tolist() == [10, pd.NA]


@pytest.mark.parametrize(
    "counts",
    [
        [5, -1],
        [12.5],
        [float("nan")],
        [float("inf")],
        ["12"],
        [True, False],
        [12, None],
    ],
)
def test_bad_counts_raise_value_error(counts: list[object]) -> None:
    with pytest.raises(ValueError):
        _control(counts)


def test_error_message_does_not_quote_the_counts() -> None:
    with pytest.raises(DisclosureError) as info:
        _control([7, -3, 4])
    message = str(info.value)
    assert "1 negative" in message
    assert "-3" not in message and "7" not in message


def test_missing_count_column_and_already_controlled_table_raise() -> None:
    with pytest.raises(DisclosureError):
        control_counts(pd.DataFrame({"n": [1]}), rules=RULES)
    controlled = _control([12])
    with pytest.raises(DisclosureError):
        control_counts(controlled, rules=RULES)


def test_empty_table() -> None:
    out = _control([])
    assert len(out) == 0
    assert str(out["count"].dtype) == "Int64"


def test_random_counts_obey_the_rules(rng: np.random.Generator) -> None:
    raw = rng.integers(0, 200, size=2_000)
    rules = DisclosureRules(min_cell=7, rounding_base=5)
    out = control_counts(pd.DataFrame({"count": raw}), rules=rules)
    suppressed = out["suppressed"].to_numpy()
    np.testing.assert_array_equal(suppressed, raw < 7)
    published = out["count"].to_numpy(dtype="float64", na_value=np.nan)[~suppressed]
    kept = raw[~suppressed]
    assert np.all(published % 5 == 0)
    assert np.all(np.abs(published - kept) <= 2.5)
    # Halves cannot occur with base 5, so each count goes to the one nearest multiple.
    np.testing.assert_array_equal(published, np.floor(kept / 5 + 0.5) * 5)


def test_round_half_up_directly() -> None:
    assert round_half_up(np.array([0, 2, 3, 7, 8]), 5).tolist() == [0, 0, 5, 5, 10]
    assert round_half_up(np.array([5, 4]), 1).tolist() == [5, 4]
