from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oda_fed.standardise import STANDARDISERS, InvalidValue, standardise_column


def test_invalid_values_are_counted_not_raised() -> None:
    raw = pd.Series(["ls62ab", "nowhere", None, "  ", "SW1A 2AA", "12345", "ls6 2ab"])
    clean, invalid = standardise_column(raw, "postcode")
    assert clean.tolist() == ["LS6 2AB", None, None, None, "SW1A 2AA", None, "LS6 2AB"]
    assert invalid.tolist() == [False, True, False, False, False, True, False]
    assert int(invalid.sum()) == 2


def test_missing_cells_are_not_invalid() -> None:
    raw = pd.Series([None, np.nan, pd.NA, "", "   ", "\t"], dtype=object)
    clean, invalid = standardise_column(raw, "name")
    assert clean.isna().all()
    assert not invalid.any()


def test_result_types_index_and_name() -> None:
    raw = pd.Series(["m", "q", None], index=[10, 20, 30], name="sex_code")
    clean, invalid = standardise_column(raw, "sex")
    assert clean.dtype == object
    assert invalid.dtype == bool
    assert clean.index.tolist() == [10, 20, 30]
    assert invalid.index.tolist() == [10, 20, 30]
    assert clean.name == "sex_code"
    assert clean[20] is None and clean[30] is None
    assert invalid[invalid].index.tolist() == [20]


def test_matches_single_value_standardiser_on_repeating_values(rng: np.random.Generator) -> None:
    pool = ["03/04/1980", "31/02/2000", "1975-1-2", "", None, "31 Dec 1999", "soon", "19600229"]
    raw = pd.Series([pool[i] for i in rng.integers(0, len(pool), 5000)], dtype=object)
    clean, invalid = standardise_column(raw, "date")
    for value, got, bad in zip(raw, clean, invalid, strict=True):
        try:
            expected = STANDARDISERS["date"](value)
        except InvalidValue:
            assert bad and got is None
        else:
            assert not bad and got == expected


def test_string_dtype_column() -> None:
    raw = pd.Series(["Zoë", None, "O'Brien"], dtype="string")
    clean, invalid = standardise_column(raw, "name")
    assert clean.tolist() == ["zoe", None, "obrien"]
    assert not invalid.any()


def test_numbers_and_dates_typed_by_a_reader() -> None:
    # An integer column with gaps is read as float; a date column as datetime64.
    nhs, invalid = standardise_column(pd.Series([9434765919.0, np.nan, 9434765918.0]), "nhs_number")
    assert nhs.tolist() == ["9434765919", None, None]
    assert invalid.tolist() == [False, False, True]

    dates, invalid = standardise_column(pd.Series(pd.to_datetime(["1980-12-31", None])), "date")
    assert dates.tolist() == ["1980-12-31", None]
    assert not invalid.any()


def test_date_format_is_applied() -> None:
    clean, invalid = standardise_column(
        pd.Series(["12/31/1980", "31/12/1980"]), "date", fmt="%m/%d/%Y"
    )
    assert clean.tolist() == ["1980-12-31", None]
    assert invalid.tolist() == [False, True]


def test_format_for_a_non_date_field_is_rejected() -> None:
    with pytest.raises(ValueError, match="date fields only"):
        standardise_column(pd.Series(["x"]), "name", fmt="%Y")


def test_unknown_field_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown field type"):
        standardise_column(pd.Series(["x"]), "address")  # type: ignore[arg-type]


def test_empty_column() -> None:
    clean, invalid = standardise_column(pd.Series([], dtype=object), "postcode")
    assert len(clean) == 0 and len(invalid) == 0
    assert invalid.dtype == bool
