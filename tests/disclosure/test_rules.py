"""DisclosureRules: validation and the sentence reports print."""

from __future__ import annotations

import pytest

from oda_fed.disclosure import DisclosureError, DisclosureRules
from oda_fed.errors import OdaFedError


def test_defaults_are_ten_and_five() -> None:
    rules = DisclosureRules()
    assert (rules.min_cell, rules.rounding_base) == (10, 5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_cell": -1},
        {"rounding_base": 0},
        {"rounding_base": -5},
        {"min_cell": 2.5},
        {"min_cell": True},
        {"rounding_base": "5"},
    ],
)
def test_invalid_rules_raise_typed_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(DisclosureError) as info:
        DisclosureRules(**kwargs)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, OdaFedError)


def test_rules_are_frozen() -> None:
    rules = DisclosureRules()
    with pytest.raises(AttributeError):
        rules.min_cell = 1  # type: ignore[misc]


def test_describe_states_threshold_rounding_and_no_totals() -> None:
    text = DisclosureRules(min_cell=10, rounding_base=5).describe()
    assert "below 10 are suppressed" in text
    assert "nearest 5" in text
    assert "No totals" in text


def test_describe_when_both_rules_are_off() -> None:
    text = DisclosureRules(min_cell=0, rounding_base=1).describe()
    assert text == "No counts are suppressed. Counts are not rounded. No totals are published."
