from __future__ import annotations

import numpy as np
import pytest

from oda_fed.encoding import FieldEncoding, default_field_encoding, encode_records, popcount
from oda_fed.errors import ConfigError
from oda_fed.standardise import FIELD_TYPES


def test_k_is_bits_per_token_times_weight_rounded_half_up() -> None:
    assert FieldEncoding("a", "name").k == 20
    assert FieldEncoding("a", "name", bits_per_token=20, weight=1.5).k == 30
    assert FieldEncoding("a", "name", bits_per_token=5, weight=0.5).k == 3  # 2.5 -> 3
    assert FieldEncoding("a", "name", bits_per_token=20, weight=0.0).k == 0


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"name": "", "type": "name"}, "empty name"),
        ({"name": "a", "type": "passport"}, "type 'passport'"),
        ({"name": "a", "type": "name", "ngram": 0}, "ngram"),
        ({"name": "a", "type": "name", "ngram": 2.0}, "ngram"),
        ({"name": "a", "type": "name", "bits_per_token": 0}, "bits_per_token"),
        ({"name": "a", "type": "name", "weight": -1.0}, "weight"),
        ({"name": "a", "type": "name", "weight": float("nan")}, "weight"),
    ],
)
def test_invalid_field_encoding(kwargs: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        FieldEncoding(**kwargs)


def test_defaults_exist_for_every_type_and_take_the_weight() -> None:
    for field_type in FIELD_TYPES:
        encoding = default_field_encoding("f", field_type)
        assert encoding.type == field_type and encoding.k >= 1
    assert (
        default_field_encoding("f", "name", weight=2.0).k
        == 2 * default_field_encoding("f", "name").k
    )


def test_default_record_fills_30_to_50_percent(rng: np.random.Generator) -> None:
    firsts = ["james", "olivia", "muhammad", "amelia", "oliver", "isla", "jack", "sophie"]
    lasts = ["smith", "jones", "williams", "taylor", "brown", "nicholson", "patel", "wright"]
    outwards = ["LS6", "BD1", "M14", "SW1A", "EC1A", "B33"]
    n = 500
    table = {
        "first_name": [firsts[i] for i in rng.integers(0, len(firsts), n)],
        "last_name": [lasts[i] for i in rng.integers(0, len(lasts), n)],
        "dob": [
            f"{y}-{m:02d}-{d:02d}"
            for y, m, d in zip(
                rng.integers(1930, 2020, n), rng.integers(1, 13, n), rng.integers(1, 29, n),
                strict=True,
            )
        ],
        "sex": [["m", "f"][i] for i in rng.integers(0, 2, n)],
        "postcode": [
            f"{outwards[o]} {d}{'ABDEFGH'[a]}{'JLNPQRS'[b]}"
            for o, d, a, b in zip(
                rng.integers(0, len(outwards), n), rng.integers(0, 10, n),
                rng.integers(0, 7, n), rng.integers(0, 7, n),
                strict=True,
            )
        ],
    }  # fmt: skip
    fields = [
        default_field_encoding("first_name", "name"),
        default_field_encoding("last_name", "name"),
        default_field_encoding("dob", "date"),
        default_field_encoding("sex", "sex"),
        default_field_encoding("postcode", "postcode"),
    ]
    clks = encode_records(table, fields=fields, secret=bytes(range(32)), context="fill")
    fill = popcount(clks) / 1024
    assert 0.30 <= fill.mean() <= 0.50
    assert fill.min() > 0.25 and fill.max() < 0.55


@pytest.mark.parametrize("field_type", FIELD_TYPES)
def test_uses_ngrams_says_whether_ngram_changes_the_tokens(field_type: str) -> None:
    from oda_fed.encoding.explain import TYPICAL
    from oda_fed.encoding.tokens import tokens

    value = TYPICAL[field_type][0]
    short, long = (FieldEncoding("f", field_type, ngram=n) for n in (2, 3))
    assert short.uses_ngrams == (tokens(value, short) != tokens(value, long))
