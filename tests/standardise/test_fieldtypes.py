from __future__ import annotations

import doctest
import importlib

import pytest

from oda_fed.standardise import (
    CANONICAL_FIELD_TYPES,
    FIELD_TYPE_ALIASES,
    FIELD_TYPES,
    STANDARDISERS,
    canonical_field_type,
)


def test_vocabulary() -> None:
    assert CANONICAL_FIELD_TYPES == (
        "name",
        "date_of_birth",
        "postcode",
        "address",
        "sex",
        "nhs_number",
        "uprn",
        "free_text",
    )
    # The deprecated names still load, after the vocabulary.
    assert (*CANONICAL_FIELD_TYPES, "date", "text") == FIELD_TYPES
    assert dict(FIELD_TYPE_ALIASES) == {"date": "date_of_birth", "text": "free_text"}


def test_every_type_has_a_standardiser() -> None:
    assert set(STANDARDISERS) == set(FIELD_TYPES)


@pytest.mark.parametrize("field_type", FIELD_TYPES)
def test_canonical_field_type(field_type: str) -> None:
    canonical = canonical_field_type(field_type)
    assert canonical in CANONICAL_FIELD_TYPES
    assert canonical == FIELD_TYPE_ALIASES.get(field_type, field_type)
    assert canonical_field_type(canonical) == canonical


def test_unknown_field_type() -> None:
    with pytest.raises(
        ValueError, match="unknown field type 'dob'; expected one of name, date_of_birth"
    ):
        canonical_field_type("dob")


def test_aliases_cannot_be_changed() -> None:
    with pytest.raises(TypeError):
        FIELD_TYPE_ALIASES["dob"] = "date_of_birth"  # type: ignore[index]


@pytest.mark.parametrize(
    "module",
    [
        "oda_fed.standardise.addresses",
        "oda_fed.standardise.column",
        "oda_fed.standardise.dates",
        "oda_fed.standardise.fieldtypes",
        "oda_fed.standardise.identifiers",
        "oda_fed.standardise.names",
    ],
)
def test_docstring_examples(module: str) -> None:
    # The examples are documentation users copy; they must stay true.
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
