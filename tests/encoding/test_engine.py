"""The shared encoding engine: code points, token lists, caches, chunks and record salts."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.encoding import (
    ClkEncoder,
    FieldEncoding,
    derive_field_keys,
    encode_records,
    engine,
    reference,
    token_batches,
    tokens,
)
from oda_fed.encoding.clk import RECORD_SALT_DOMAIN
from oda_fed.encoding.clkhash_schema import (
    ClkhashFeature,
    DateFormat,
    EnumFormat,
    IntegerFormat,
    NgramComparison,
    StringFormat,
)
from oda_fed.encoding.clkhash_values import format_values, formatter
from oda_fed.encoding.codepoints import ArrowText, CodePoints
from oda_fed.encoding.engine import FieldBatch, TokenCache, ValueCache, encode_batches
from oda_fed.encoding.fields import default_field_encoding
from oda_fed.encoding.tokens import TokenLists, ngram_lists, token_lists
from oda_fed.errors import InputDataError

SECRET = b"partners' shared linkage secret!"
CONTEXT = "engine-tests"
FIELDS = [
    default_field_encoding("first_name", "name"),
    default_field_encoding("dob", "date"),
    default_field_encoding("postcode", "postcode"),
]


def test_arrow_text_gives_the_code_points_its_strings_give() -> None:
    import pyarrow as pa

    values = ["", "a", "zoë", "\x00x\x00", "😀b", "ab", "0123"]
    ascii_only = [value for value in values if value.isascii()]
    for array in (
        pa.array(values),
        pa.array(values, pa.large_string()),
        pa.array(["before", *values]).slice(1),  # an offset into the buffers
        pa.array(ascii_only),
        pa.array(["x", *ascii_only], pa.large_string()).slice(1),
        pa.array([], pa.string()),
    ):
        text = ArrowText(array)
        expected = CodePoints.from_strings(array.to_pylist())
        got = CodePoints.of(text)
        assert got.data.tolist() == expected.data.tolist()
        assert got.offsets.tolist() == expected.offsets.tolist()
        assert len(text) == len(array) and list(text) == array.to_pylist()
    with pytest.raises(ValueError, match="missing"):
        ArrowText(pa.array(["a", None]))


def test_code_points_keep_every_character() -> None:
    values = ["", "a", "zoë", "\x00x\x00", "\ud800", "😀b", "ab"]
    points = CodePoints.from_strings(values)
    assert points.lengths.tolist() == [len(v) for v in values]
    assert [points.string(v) for v in range(len(values))] == values
    assert points.all_in([(0, 0x7F)]).tolist() == [True, True, False, True, False, False, True]


# --- vectorised checks are the one-value checks ---------------------------------------------------

_FORMATS = [
    IntegerFormat(),
    IntegerFormat(minimum=0, maximum=500),
    IntegerFormat(minimum=-(2**70)),
    StringFormat(pattern="[0-9]{4}"),
    StringFormat(pattern="[0-9]*"),
    StringFormat(pattern="[a-c_]+"),
    StringFormat(pattern="x"),
    StringFormat(pattern="(?i)[a-c]+"),
    StringFormat(pattern="[^0-9]*"),
    StringFormat(pattern=r"\d{2,3}"),
    StringFormat(pattern="[0-9][a-z]"),
    StringFormat(case="lower", max_length=3),
    StringFormat(case="upper", min_length=2),
    StringFormat(encoding="ascii"),
    StringFormat(encoding="utf-16", case="lower"),
    DateFormat(format="%Y-%m-%d"),
    EnumFormat(values=("a", "b")),
]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.sampled_from(_FORMATS),
    st.sampled_from([None, "", "N/A"]),
    st.lists(
        st.text(alphabet="0123456789abcAB_ xéÉß٣\ud800-+N/", max_size=7)
        | st.sampled_from(["2001-02-03", "007", "1" * 19, "ǅ", "İ"]),
        max_size=30,
        unique=True,
    ),
)
def test_format_values_gives_what_the_one_value_checks_give(fmt, sentinel, values) -> None:
    feature = ClkhashFeature(
        identifier="f",
        index=0,
        format=fmt,
        comparison=NgramComparison(n=2),
        missing_sentinel=sentinel,
        missing_replacement=None if sentinel is None else "",
    )
    formatted, problems, points = format_values(feature, values)
    check = formatter(feature)
    for i, value in enumerate(values):
        if value == sentinel:
            assert formatted[i] == "" and i not in problems
            continue
        text, problem = check(value)
        assert formatted[i] == (text or "")
        assert problems.get(i) == (None if problem is None else f"invalid: {problem}")
    assert [points.string(v) for v in range(len(formatted))] == formatted


# --- n-grams by every path --------------------------------------------------------------------------


def _plain_ngrams(value: str, n: int, *, pad: str, pad_width: int, positional: bool) -> list:
    if not value:
        return []
    padded = pad * pad_width + value + pad * pad_width
    if len(padded) < n:
        return [padded]
    grams = [padded[i : i + n] for i in range(len(padded) - n + 1)]
    return [f"{i + 1} {g}" for i, g in enumerate(grams)] if positional else grams


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(st.text(alphabet="ab \x00é😀\ud800_Z", max_size=10), max_size=12, unique=True),
    st.integers(1, 3),
    st.integers(0, 3),
    st.booleans(),
    st.sampled_from(["dense", "packed", "sliced"]),
)
def test_ngram_lists_agree_on_every_path(monkeypatch_values, n, pad_width, positional, path):
    values = monkeypatch_values
    with pytest.MonkeyPatch.context() as patch:
        if path != "dense":
            # No table is small enough, so keys are packed (n <= 3) or sliced (n > 3).
            patch.setattr(token_batches, "_DENSE_KEYS", 0)
            patch.setattr(token_batches, "_MAX_DENSE_KEYS", 0)
        # Without a table, 4-grams fit no 64-bit key, so they are sliced.
        n = 4 if path == "sliced" else min(n, 3)
        found = ngram_lists(values, n, pad="_", pad_width=pad_width, positional=positional)
    expected = [
        _plain_ngrams(v, n, pad="_", pad_width=pad_width, positional=positional) for v in values
    ]
    assert found.lists() == expected
    assert len(set(found.keys)) == len(found.keys)


def test_wide_ngrams_of_many_code_points_take_the_general_path() -> None:
    # 4-grams over a large alphabet fit neither a table nor 64 bits.
    values = ["".join(chr(0x4E00 + (7 * i + j) % 5000) for j in range(12)) for i in range(400)]
    found = ngram_lists(values, 4, pad=" ", pad_width=3, positional=True)
    assert found.lists() == [
        _plain_ngrams(v, 4, pad=" ", pad_width=3, positional=True) for v in values
    ]


# --- batch tokens are the one-value tokens --------------------------------------------------------

_values = st.lists(st.text(alphabet="ab _\x00éZ1", max_size=14), max_size=25, unique=True)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    _values,
    st.integers(1, 5),
    st.sampled_from(["name", "text", "postcode", "sex", "nhs_number"]),
)
def test_token_lists_give_each_value_its_tokens(values, n, kind) -> None:
    encoding = FieldEncoding("f", kind, ngram=n)
    got = token_lists(values, encoding).lists()
    assert [set(found) for found in got] == [set(tokens(v, encoding)) for v in values]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(
        st.dates().map(str) | st.sampled_from(["", "1980-1-2", "١٩٨٠-٠١-٠٢"]),
        max_size=20,
        unique=True,
    )
)
def test_date_token_lists_give_each_value_its_tokens(values) -> None:
    encoding = FieldEncoding("dob", "date")
    valid = [v for v in values if v != "1980-1-2"]
    got = token_lists(valid, encoding).lists()
    assert [sorted(found) for found in got] == [sorted(tokens(v, encoding)) for v in valid]


def test_ngram_lists_keep_repeats_and_positions() -> None:
    found = ngram_lists(["aaa", "ab"], 2, pad=" ", pad_width=1, positional=True).lists()
    assert found == [["1  a", "2 aa", "3 aa", "4 a "], ["1  a", "2 ab", "3 b "]]
    # n-grams too wide for a 64-bit key (and positional) take the general path.
    wide = ngram_lists(["abcdefgh"], 4, pad="_", pad_width=1, positional=True).lists()
    assert wide == [
        [
            f"{i + 1} {g}"
            for i, g in enumerate(["_abc", "abcd", "bcde", "cdef", "defg", "efgh", "fgh_"])
        ]
    ]


# --- caches ---------------------------------------------------------------------------------------


def _counting_hasher(calls: list):
    def hasher(keys, need):
        calls.append(list(keys))
        lengths = np.asarray(need, dtype=np.int64)
        return np.arange(int(lengths.sum()), dtype=np.uint32) % 64, lengths

    return hasher


def test_token_cache_hashes_each_token_once_and_extends_short_ones() -> None:
    calls: list = []
    cache = TokenCache(_counting_hasher(calls))
    first = cache.ids(["a", "b", "a"], np.array([2, 3, 5]))
    assert first.tolist() == [0, 1, 0]
    assert calls == [["a", "b"]]
    assert cache.lengths.tolist() == [5, 3]
    again = cache.ids(["b", "a"], np.array([1, 1]))
    assert again.tolist() == [1, 0] and len(calls) == 1
    cache.ids(["b"], np.array([9]))
    assert calls[-1] == ["b"] and cache.lengths.tolist() == [5, 9]


def test_value_cache_tokenises_each_value_once_and_forgets_past_its_limit() -> None:
    seen: list = []

    def tokenise(values):
        seen.append(list(values))
        found = TokenLists.from_lists([list(v) for v in values])
        return found, np.ones(len(found.index), dtype=np.int64), {}

    cache = ValueCache(TokenCache(_counting_hasher([])), tokenise, max_values=3)
    batch, problems = cache.batch(np.array([0, 1, 1]), ["ab", "b"])
    assert problems == {} and seen == [["ab", "b"]]
    assert batch.offsets.tolist() == [0, 2, 3]
    cache.batch(np.array([0, 1]), ["b", "c"])
    assert seen[-1] == ["c"]
    assert len(cache) == 3
    cache.batch(np.array([0]), ["d"])
    cache.batch(np.array([0]), ["ab"])  # four values were cached, so all were forgotten
    assert seen[-1] == ["ab"] and len(cache) == 1


def test_values_with_problems_are_reported_and_not_cached() -> None:
    def tokenise(values):
        found = TokenLists.from_lists([[] if v == "bad" else [v] for v in values])
        return (
            found,
            np.ones(len(found.index), dtype=np.int64),
            {i: "no good" for i, v in enumerate(values) if v == "bad"},
        )

    cache = ValueCache(TokenCache(_counting_hasher([])), tokenise)
    _, problems = cache.batch(np.array([0, 1]), ["ok", "bad"])
    assert problems == {1: "no good"}
    _, problems = cache.batch(np.array([0]), ["bad"])
    assert problems == {0: "no good"}


# --- the native encoder ---------------------------------------------------------------------------


def _table(rng: np.random.Generator, n: int) -> dict[str, list[str | None]]:
    names = ["anna", "ann", "bob", "zoë", "", None, "mary ann"]
    dates = ["1980-04-03", "1980-03-04", "2001-12-31", None]
    postcodes = ["LS6 2AB", "LS62AB", "M1 1AE", None, "SW1A 2AA"]
    return {
        "first_name": [names[i] for i in rng.integers(0, len(names), n)],
        "dob": [dates[i] for i in rng.integers(0, len(dates), n)],
        "postcode": [postcodes[i] for i in rng.integers(0, len(postcodes), n)],
    }


def _encode(table, **kwargs) -> np.ndarray:
    return encode_records(table, fields=FIELDS, secret=SECRET, context=CONTEXT, **kwargs)


def test_chunks_and_reused_encoders_give_the_same_bits(monkeypatch, rng) -> None:
    table = _table(rng, 200)
    whole = _encode(table)
    monkeypatch.setattr("oda_fed.encoding.clk._ROW_BLOCK", 7)
    monkeypatch.setattr("oda_fed.encoding.clk._VALUE_BLOCK", 2)
    np.testing.assert_array_equal(_encode(table), whole)
    encoder = ClkEncoder(FIELDS, secret=SECRET, context=CONTEXT)
    for lo in range(0, 200, 50):
        chunk = {name: column[lo : lo + 50] for name, column in table.items()}
        np.testing.assert_array_equal(encoder.encode(chunk), whole[lo : lo + 50])


def test_masks_and_direct_bit_setting_agree(monkeypatch, rng) -> None:
    table = _table(rng, 100)
    masked = _encode(table)
    monkeypatch.setattr(engine, "_MASK_BYTES", 0)
    np.testing.assert_array_equal(_encode(table), masked)
    for bits in (64, 65536):
        monkeypatch.setattr(engine, "_MASK_BYTES", 256 << 20)
        wide = _encode(table, bits=bits)
        monkeypatch.setattr(engine, "_MASK_BYTES", 0)
        np.testing.assert_array_equal(_encode(table, bits=bits), wide)


def _salted_positions(token: str, salt: str, key: bytes, *, k: int, bits: int) -> list[int]:
    """The documented salted hashing, written out one digest at a time."""
    salt_bytes = salt.encode("utf-8")
    data = len(salt_bytes).to_bytes(4, "little") + salt_bytes + token.encode("utf-8")
    stream = b""
    j = 0
    while len(stream) < 2 * k:
        person = j.to_bytes(16, "little")
        stream += hashlib.blake2b(
            data, key=key, digest_size=64, person=person, salt=RECORD_SALT_DOMAIN
        ).digest()
        j += 1
    return [int.from_bytes(stream[2 * i : 2 * i + 2], "little") % bits for i in range(k)]


def test_salted_records_follow_the_documented_hash() -> None:
    field = FieldEncoding("first_name", "name", bits_per_token=40)
    key = derive_field_keys(SECRET, context=CONTEXT, fields=[field])["first_name"]
    clks = encode_records(
        {"first_name": ["anna", "anna", "bob"]},
        fields=[field],
        secret=SECRET,
        context=CONTEXT,
        salts=["1980", "1981", "1980"],
    )
    for row, (value, salt) in enumerate([("anna", "1980"), ("anna", "1981"), ("bob", "1980")]):
        expected = 0
        for token in tokens(value, field):
            for p in _salted_positions(token, salt, key, k=field.k, bits=1024):
                expected |= 1 << p
        got = sum(int(w) << (64 * i) for i, w in enumerate(clks[row]))
        assert got == expected


def test_salts_change_bits_and_none_salts_change_nothing(rng) -> None:
    table = _table(rng, 60)
    plain = _encode(table)
    unsalted = _encode(table, salts=[None] * 60)
    np.testing.assert_array_equal(unsalted, plain)
    salts = [None if i % 3 == 0 else f"s{i % 2}" for i in range(60)]
    salted = _encode(table, salts=salts)
    for i, salt in enumerate(salts):
        if salt is None or not plain[i].any():
            np.testing.assert_array_equal(salted[i], plain[i])
        else:
            assert (salted[i] != plain[i]).any()
    # The same (salt, value) gives the same bits wherever it appears, chunked or not.
    again = _encode(table, salts=salts)
    np.testing.assert_array_equal(again, salted)


def test_salts_must_match_the_records() -> None:
    with pytest.raises(InputDataError, match="2 record salts for 3 records"):
        _encode(
            {"first_name": ["a", "b", "c"], "dob": [None] * 3, "postcode": [None] * 3},
            salts=["x", "y"],
        )
    with pytest.raises(InputDataError, match="salts"):
        _encode({"first_name": ["a"], "dob": [None], "postcode": [None]}, salts=[3])


def test_fields_set_by_masks_and_row_by_row_give_the_same_bits(monkeypatch, rng) -> None:
    cache = TokenCache(
        lambda keys, need: (
            rng.integers(0, 128, int(np.sum(need)), dtype=np.uint32),
            np.asarray(need, dtype=np.int64),
        )
    )
    rows = 300
    batches = []
    for values in (3, rows):  # a field whose values repeat, and one whose values do not
        found = TokenLists.from_lists(
            [[f"t{(v * 7 + j) % 11}" for j in range(v % 4)] for v in range(values)]
        )
        ks = rng.integers(1, 9, len(found.index))
        need = np.zeros(len(found.keys), dtype=np.int64)
        np.maximum.at(need, found.index, ks)
        tokens_ = cache.ids(found.keys, need)[found.index]
        codes = rng.integers(-1, values, rows)
        batches.append(FieldBatch(codes, found.offsets, tokens_, ks, cache))
    expected = np.zeros((rows, 2), dtype=np.uint64)
    for batch in batches:
        reference.set_token_bits(
            batch.codes,
            batch.offsets,
            batch.tokens,
            batch.ks,
            cache.offsets,
            cache.positions,
            expected,
        )
    np.testing.assert_array_equal(encode_batches(batches, rows=rows, words=2), expected)
    monkeypatch.setattr(engine, "_MASK_BYTES", 0)
    np.testing.assert_array_equal(encode_batches(batches, rows=rows, words=2), expected)


def test_encode_batches_of_no_rows() -> None:
    cache = TokenCache(_counting_hasher([]))
    batch = FieldBatch(
        np.zeros(0, dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        np.zeros(0, dtype=np.int64),
        np.zeros(0, dtype=np.int64),
        cache,
    )
    assert encode_batches([batch], rows=0, words=4).shape == (0, 4)
