from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.standardise import (
    CANONICAL_FIELD_TYPES,
    FIELD_TYPE_ALIASES,
    FIELD_TYPES,
    STANDARDISERS,
    InvalidValue,
    canonical_field_type,
    standardise_column,
)


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
    with pytest.raises(ValueError, match="unknown field type 'passport'.*date_of_birth"):
        standardise_column(pd.Series(["x"]), "passport")  # type: ignore[arg-type]


def test_empty_column() -> None:
    clean, invalid = standardise_column(pd.Series([], dtype=object), "postcode")
    assert len(clean) == 0 and len(invalid) == 0
    assert invalid.dtype == bool


# A messy, a good and an invalid value of each field type, plus missing cells.
_SAMPLES: dict[str, tuple[str, str, str]] = {
    "name": ("  Mr JOHN  smith ", "john smith", "-"),
    "date_of_birth": ("3/4/1980", "1980-04-03", "31/02/2000"),
    "postcode": ("ls6 oab", "LS6 0AB", "LS6 2CB"),
    "address": ("Flat 3, 41 Mill Rd, LS6 2AB", "flat 3 41 mill road", "LS6 2AB"),
    "sex": ("Female", "f", "q"),
    "nhs_number": ("943 476 5919", "9434765919", "9434765918"),
    "uprn": ("000100023336956", "100023336956", "1000233369561"),
    "free_text": ("Café  Röntgen", "cafe rontgen", "..."),
}


@pytest.mark.parametrize("field_type", FIELD_TYPES)
def test_every_field_type_counts_invalid_values_without_raising(field_type: str) -> None:
    messy, clean_value, bad = _SAMPLES[canonical_field_type(field_type)]
    raw = pd.Series([messy, bad, None, "", bad, messy], dtype=object)
    clean, invalid = standardise_column(raw, field_type)  # type: ignore[arg-type]
    assert clean.tolist() == [clean_value, None, None, None, None, clean_value]
    # Values that standardise to nothing ("-" as a name, a postcode alone as an address) are
    # missing; those the standardiser rejects are invalid and counted.
    rejected = field_type not in ("name", "free_text", "text", "address")
    assert invalid.tolist() == [False, rejected, False, False, rejected, False]
    assert int(invalid.sum()) == (2 if rejected else 0)


@given(st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=30))
@settings(max_examples=60, deadline=None, derandomize=True)
def test_no_field_type_raises_on_arbitrary_text(cells: list[str | None]) -> None:
    raw = pd.Series(cells, dtype=object)
    for field_type in CANONICAL_FIELD_TYPES:
        clean, invalid = standardise_column(raw, field_type)
        assert len(clean) == len(invalid) == len(cells)
        assert not (clean.notna() & invalid).any()


def test_deprecated_aliases_standardise_like_their_new_names() -> None:
    raw = pd.Series(["31 Dec 1980", "31/02/2000", None])
    for alias, name in FIELD_TYPE_ALIASES.items():
        assert STANDARDISERS[alias] is STANDARDISERS[name]  # type: ignore[index]
    old, old_invalid = standardise_column(raw, "date")
    new, new_invalid = standardise_column(raw, "date_of_birth")
    assert old.tolist() == new.tolist() == ["1980-12-31", None, None]
    assert old_invalid.tolist() == new_invalid.tolist() == [False, True, False]


def test_date_format_applies_to_date_of_birth_too() -> None:
    clean, invalid = standardise_column(
        pd.Series(["12/31/1980", "31/12/1980"]), "date_of_birth", fmt="%m/%d/%Y"
    )
    assert clean.tolist() == ["1980-12-31", None]
    assert invalid.tolist() == [False, True]


def test_uprn_column_typed_as_numbers_by_a_reader() -> None:
    clean, invalid = standardise_column(pd.Series([100023336956, 0, 7]), "uprn")
    assert clean.tolist() == ["100023336956", None, "7"]
    assert invalid.tolist() == [False, True, False]
    floats, invalid = standardise_column(pd.Series([100023336956.0, np.nan]), "uprn")
    assert floats.tolist() == ["100023336956", None]
    assert not invalid.any()


def test_each_distinct_value_is_standardised_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []
    original = STANDARDISERS["address"]

    def counting(value: str | None) -> str | None:
        calls.append(value)
        return original(value)

    monkeypatch.setitem(STANDARDISERS, "address", counting)
    raw = pd.Series(["41 Mill Rd", "Flat 3, 41 Mill Rd", None] * 1000)
    clean, _ = standardise_column(raw, "address")
    assert sorted(calls) == ["41 Mill Rd", "Flat 3, 41 Mill Rd"]
    assert clean.iloc[:3].tolist() == ["41 mill road", "flat 3 41 mill road", None]


@pytest.mark.parametrize("dtype", [object, "string[pyarrow]"])
def test_addresses_plain_or_not_match_the_single_value_standardiser(dtype: object) -> None:
    raw = ["Flat 7, 592 Terry Knoll, Khanmouth", "41 St Mary's Rd", None, "", "4 ELM WAY"] * 3
    clean, invalid = standardise_column(pd.Series(raw, dtype=dtype), "address")
    assert clean.tolist() == [STANDARDISERS["address"](v) for v in raw]
    assert not invalid.any()
