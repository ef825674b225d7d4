"""`project explain`: the fill estimate matches reality, and bad fills are warned about."""

from __future__ import annotations

import numpy as np
import pytest

from oda_fed.encoding import default_field_encoding, encode_records
from oda_fed.encoding.explain import FILL_HIGH, FILL_LOW, expected_fill, explain

FIELDS = [
    default_field_encoding("first_name", "name"),
    default_field_encoding("last_name", "name"),
    default_field_encoding("dob", "date"),
    default_field_encoding("sex", "sex"),
    default_field_encoding("postcode", "postcode"),
]


def test_expected_fill_formula() -> None:
    assert expected_fill(0, 1024) == 0
    assert expected_fill(1024, 1024) == pytest.approx(1 - (1 - 1 / 1024) ** 1024)


def test_estimate_is_close_to_the_measured_fill() -> None:
    table = {
        "first_name": ["john", "elizabeth", "mohammed", "sarah"] * 25,
        "last_name": ["smith", "oconnor", "taylor", "lee"] * 25,
        "dob": ["1980-12-31", "2004-03-07", "1955-06-01", "1999-11-11"] * 25,
        "sex": ["m", "f", "m", "f"] * 25,
        "postcode": ["LS6 2AB", "M1 1AE", "HD1 3XY", "BD7 1AA"] * 25,
    }
    clks = encode_records(table, fields=FIELDS, secret=b"s" * 32, context="t", bits=1024)
    result = explain(FIELDS, bits=1024, sample=clks)
    assert result.measured_fill == pytest.approx(result.expected_fill, abs=0.05)
    assert FILL_LOW < result.expected_fill < FILL_HIGH
    assert result.warnings == []


def test_too_full_and_too_empty_are_warned() -> None:
    heavy = [default_field_encoding(f.name, f.type, weight=4.0) for f in FIELDS]
    assert any("too full" in w for w in explain(heavy, bits=1024).warnings)
    light = [default_field_encoding("sex", "sex")]
    assert any("too empty" in w for w in explain(light, bits=1024).warnings)


def test_a_dominant_field_is_pointed_out() -> None:
    fields = [default_field_encoding("a", "name", weight=5.0), default_field_encoding("b", "sex")]
    warnings = explain(fields, bits=4096).warnings
    assert any("field 'a' makes over half" in w for w in warnings)


def test_measured_fill_counts_bits() -> None:
    sample = np.zeros((2, 16), dtype=np.uint64)
    sample[:, :8] = np.uint64(0xFFFFFFFFFFFFFFFF)
    assert explain(FIELDS, bits=1024, sample=sample).measured_fill == pytest.approx(0.5)
