from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.encoding import (
    FieldEncoding,
    default_field_encoding,
    derive_field_keys,
    encode_records,
    popcount,
    tokens,
)
from oda_fed.encoding.clk import _FieldMasks, _popcount_bytes
from oda_fed.errors import AuthError, ConfigError, InputDataError
from oda_fed.standardise import standardise_column

SECRET = b"partners' shared linkage secret!"
CONTEXT = "test-project"
FIELDS = [
    default_field_encoding("first_name", "name"),
    default_field_encoding("last_name", "name"),
    default_field_encoding("dob", "date"),
    default_field_encoding("sex", "sex"),
    default_field_encoding("postcode", "postcode"),
]


def _table(*records: tuple[str | None, ...]) -> dict[str, list[str | None]]:
    columns = zip(*records, strict=True) if records else [()] * len(FIELDS)
    return {f.name: list(col) for f, col in zip(FIELDS, columns, strict=True)}


def _encode(table, *, fields=FIELDS, secret=SECRET, context=CONTEXT, bits=1024) -> np.ndarray:
    return encode_records(table, fields=fields, secret=secret, context=context, bits=bits)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    ones = lambda x: int(np.unpackbits(x.view(np.uint8)).sum())  # noqa: E731
    return 2 * ones(a & b) / (ones(a) + ones(b))


# --- a slow, straightforward reference: one record, one token, one position at a time ---------


def _reference_positions(token: str, key: bytes, *, k: int, bits: int) -> list[int]:
    stream = hashlib.blake2b(token.encode("utf-8"), key=key, digest_size=64).digest()
    counter = 1
    while len(stream) < 2 * k:
        person = counter.to_bytes(16, "little")
        stream += hashlib.blake2b(
            token.encode("utf-8"), key=key, digest_size=64, person=person
        ).digest()
        counter += 1
    return [int.from_bytes(stream[2 * i : 2 * i + 2], "little") % bits for i in range(k)]


def _reference_encode(table, *, fields, secret, context, bits) -> np.ndarray:
    keys = derive_field_keys(secret, context=context, fields=fields)
    n = len(table[fields[0].name])
    out = np.zeros((n, bits // 64), dtype=np.uint64)
    for row in range(n):
        words = [0] * (bits // 64)
        for field in fields:
            value = table[field.name][row]
            if value is None:
                continue
            for token in tokens(value, field):
                for b in _reference_positions(token, keys[field.name], k=field.k, bits=bits):
                    words[b // 64] |= 1 << (b % 64)
        out[row] = words
    return out


_names = st.text(alphabet="abce y", min_size=0, max_size=8)
_dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2020, 12, 31)).map(str)
_postcodes = st.sampled_from(["LS6 2AB", "LS6 2AD", "SW1A 2AA", "M1 1AE", "B33 8TH"])
_sexes = st.sampled_from(["m", "f", "u"])


@st.composite
def _tables(draw):
    n = draw(st.integers(min_value=0, max_value=25))
    fields = [
        FieldEncoding(
            "name",
            "name",
            ngram=draw(st.integers(1, 3)),
            bits_per_token=draw(st.integers(1, 40)),
            weight=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])),
        ),
        # k up to 70 needs three digests per token, so the counter is exercised.
        FieldEncoding("dob", "date", bits_per_token=draw(st.integers(1, 70))),
        FieldEncoding("postcode", "postcode", ngram=draw(st.integers(1, 3))),
        FieldEncoding("sex", "sex", bits_per_token=draw(st.integers(1, 10))),
    ]
    # Few distinct values, so that rows share values and values share tokens.
    strategies = {"name": _names, "dob": _dates, "postcode": _postcodes, "sex": _sexes}
    table = {
        name: draw(st.lists(st.none() | strategy, min_size=n, max_size=n))
        for name, strategy in strategies.items()
    }
    bits = draw(st.sampled_from([64, 128, 256, 1024]))
    return table, fields, bits


@settings(derandomize=True, max_examples=60, deadline=None)
@given(_tables())
def test_cached_vectorised_encoding_matches_reference(case) -> None:
    table, fields, bits = case
    got = _encode(table, fields=fields, bits=bits)
    expected = _reference_encode(table, fields=fields, secret=SECRET, context=CONTEXT, bits=bits)
    np.testing.assert_array_equal(got, expected)


def test_block_boundaries_match_reference(monkeypatch, rng: np.random.Generator) -> None:
    # Tiny blocks, so that distinct values and rows span many blocks, with token-less values
    # ("") at block edges, including the last.
    monkeypatch.setattr("oda_fed.encoding.clk._VALUE_BLOCK", 3)
    monkeypatch.setattr("oda_fed.encoding.clk._ROW_BLOCK", 4)
    pool = ["", "ann", "bob", "", "cy", "dee", "eve", "fay", "gus", None, "hal", ""]
    table = {"name": [pool[i] for i in rng.integers(0, len(pool), 40)] + ["", "ann", ""]}
    fields = [FieldEncoding("name", "name")]
    got = _encode(table, fields=fields)
    expected = _reference_encode(table, fields=fields, secret=SECRET, context=CONTEXT, bits=1024)
    np.testing.assert_array_equal(got, expected)


# --- behaviour ---------------------------------------------------------------------------


RECORDS = [
    ("john", "nicholson", "1980-04-03", "m", "LS6 2AB"),
    ("john", "nicolson", "1980-03-04", "m", "LS6 2AB"),
    ("mary", "wright", "1955-11-23", "f", "SW1A 2AA"),
]


def test_shape_dtype_and_contiguity() -> None:
    for bits in (64, 512, 1024, 4096):
        clks = _encode(_table(*RECORDS), bits=bits)
        assert clks.shape == (3, bits // 64)
        assert clks.dtype == np.uint64
        assert clks.flags.c_contiguous


def test_no_records() -> None:
    clks = _encode(_table())
    assert clks.shape == (0, 16) and clks.dtype == np.uint64
    assert popcount(clks).shape == (0,)


def test_deterministic() -> None:
    np.testing.assert_array_equal(_encode(_table(*RECORDS)), _encode(_table(*RECORDS)))


def test_known_answer() -> None:
    # Pins the hashing and the wire format (little-endian words): a change here breaks linkage
    # between partners running different versions, so it must be deliberate.
    clks = _encode(_table(RECORDS[0]))
    assert clks.astype("<u8").tobytes().hex() == (
        "0029cd1c7404585088237a801e4f296e51269c59b92c2a2f5008841cf701e834"
        "8624c40ca020454af61b1810de44484dfd180a0904c07a18616c29f28f075a0a"
        "a589b686d0c5ff5c7d650d1886c49f8881c95397274d5ed05431297111456f0b"
        "7691948f09019b382a40d454489b83284d8e80abb8a2434a07f98c2341f0d5b7"
    )


def test_bit_layout_is_lsb_first_within_words() -> None:
    # A one-token field with k = 1 sets exactly the bit its reference position names.
    field = FieldEncoding("sex", "sex", bits_per_token=1)
    clk = _encode({"sex": ["f"]}, fields=[field])[0]
    key = derive_field_keys(SECRET, context=CONTEXT, fields=[field])["sex"]
    (position,) = _reference_positions("sex:f", key, k=1, bits=1024)
    bits = np.unpackbits(clk.astype("<u8").view(np.uint8), bitorder="little")
    assert np.flatnonzero(bits).tolist() == [position]
    assert int(clk[position // 64]) == 1 << (position % 64)


def test_rows_are_independent_of_their_neighbours() -> None:
    together = _encode(_table(*RECORDS))
    for i, record in enumerate(RECORDS):
        np.testing.assert_array_equal(together[i], _encode(_table(record))[0])


def test_secret_and_context_change_the_clks() -> None:
    base = _encode(_table(*RECORDS))
    other_secret = _encode(_table(*RECORDS), secret=SECRET[:-1] + b"?")
    other_context = _encode(_table(*RECORDS), context="another-project")
    for other in (other_secret, other_context):
        assert (base != other).any(axis=1).all()
        assert max(_dice(base[i], other[i]) for i in range(3)) < 0.6


def test_field_key_decides_the_bits_of_a_token() -> None:
    value = {"a": ["taylor"], "b": ["taylor"]}
    in_a = _encode(value, fields=[FieldEncoding("a", "name")])
    in_b = _encode(value, fields=[FieldEncoding("b", "name")])
    assert popcount(in_a)[0] > 0 and popcount(in_b)[0] > 0
    assert _dice(in_a[0], in_b[0]) < 0.5


def test_missing_values_set_no_bits() -> None:
    table = _table(*RECORDS, (None, None, None, None, None))
    clks = _encode(table)
    assert popcount(clks)[3] == 0
    # A missing field leaves exactly the bits of the other fields.
    partial = _encode(_table(("john", None, "1980-04-03", None, "LS6 2AB")))
    without = _encode(
        {"first_name": ["john"], "dob": ["1980-04-03"], "postcode": ["LS6 2AB"]},
        fields=[FIELDS[0], FIELDS[2], FIELDS[4]],
    )
    np.testing.assert_array_equal(partial, without)


def test_accepts_standardised_pandas_columns() -> None:
    raw = pd.Series(["Mr John SMITH", "  ", "Zoë O'Brien", "J. Smith"])
    clean, _ = standardise_column(raw, "name")
    fields = [FieldEncoding("full_name", "name")]
    from_series = _encode({"full_name": clean}, fields=fields)
    from_list = _encode({"full_name": ["john smith", None, "zoe obrien", "j smith"]}, fields=fields)
    np.testing.assert_array_equal(from_series, from_list)


def test_nan_is_missing() -> None:
    with_nan = _encode({"first_name": ["john", float("nan")]}, fields=FIELDS[:1])
    assert popcount(with_nan)[1] == 0


def test_zero_weight_field_sets_no_bits() -> None:
    fields = [FieldEncoding("first_name", "name", weight=0.0)]
    assert popcount(_encode({"first_name": ["john"]}, fields=fields))[0] == 0


def test_similar_records_score_high_and_unrelated_low() -> None:
    clks = _encode(_table(*RECORDS))
    assert _dice(clks[0], clks[1]) > 0.8  # surname typo and day/month swap
    assert _dice(clks[0], clks[2]) < 0.5


def test_similar_names_score_high_and_unrelated_low() -> None:
    fields = [default_field_encoding("name", "name")]
    clks = _encode({"name": ["john nicholson", "john nicolson", "priya sharma"]}, fields=fields)
    assert _dice(clks[0], clks[1]) > 0.85
    assert _dice(clks[0], clks[2]) < 0.3


def test_each_distinct_token_is_hashed_once() -> None:
    masks = _FieldMasks(FIELDS[0], b"k" * 32, bits=1024)
    first = masks.token_ids("anna")
    assert masks.token_ids("anna") == first
    masks.token_ids("hannah")  # shares "an", "nn" and "na" with "anna"
    assert masks.masks().shape == (
        len(set(tokens("anna", FIELDS[0])) | set(tokens("hannah", FIELDS[0]))),
        16,
    )


@pytest.mark.parametrize("bits", [0, 32, 100, 1000, 1 << 17, True])
def test_bad_lengths_are_rejected(bits: int) -> None:
    with pytest.raises(ConfigError, match="power of two"):
        _encode(_table(*RECORDS), bits=bits)


def test_short_secret_is_rejected() -> None:
    with pytest.raises(AuthError, match="at least 16"):
        _encode(_table(*RECORDS), secret=b"short")


def test_table_problems_are_input_errors() -> None:
    table = _table(*RECORDS)
    del table["dob"]
    with pytest.raises(InputDataError, match="dob"):
        _encode(table)
    table = _table(*RECORDS)
    table["sex"] = ["m"]
    with pytest.raises(InputDataError, match="differ in length"):
        _encode(table)
    table = _table(*RECORDS)
    table["first_name"] = ["john", 7, None]
    with pytest.raises(InputDataError, match="standardised strings"):
        _encode(table)
    table = _table(*RECORDS)
    table["dob"] = ["03/04/1980", None, None]
    with pytest.raises(InputDataError, match="YYYY-MM-DD"):
        _encode(table)


def test_no_fields_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no linkage fields"):
        _encode(_table(*RECORDS), fields=[])


def test_popcount(rng: np.random.Generator) -> None:
    clks = rng.integers(0, 2**64, size=(50, 16), dtype=np.uint64)
    clks[0] = 0
    clks[1] = np.uint64(2**64 - 1)
    expected = [int(np.unpackbits(row.view(np.uint8)).sum()) for row in clks]
    got = popcount(clks)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert got[0] == 0 and got[1] == 1024
    assert _popcount_bytes(clks).tolist() == expected


def test_popcount_rejects_other_arrays() -> None:
    with pytest.raises(ValueError, match="uint64"):
        popcount(np.zeros((2, 16), dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        popcount(np.zeros(16, dtype=np.uint64))
