"""encode_clkhash's inputs, chunks and errors (bit-identity with clkhash is test_clkhash_interop)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oda_fed.encoding import ClkhashEncoder, encode_clkhash
from oda_fed.encoding.clkhash_schema import parse_clkhash_schema
from oda_fed.errors import AuthError, InputDataError

SECRET = "a secret the partners share"
SCHEMA = parse_clkhash_schema(
    {
        "version": 3,
        "clkConfig": {"l": 512, "kdf": {"type": "HKDF"}},
        "features": [
            {"identifier": "id", "ignored": True},
            {
                "identifier": "name",
                "format": {"type": "string", "maxLength": 20},
                "hashing": {
                    "comparison": {"type": "ngram", "n": 2},
                    "strategy": {"bitsPerToken": 10},
                },
            },
            {
                "identifier": "year",
                "format": {"type": "integer", "minimum": 1900},
                "hashing": {
                    "comparison": {"type": "exact"},
                    "strategy": {"bitsPerToken": 20},
                    "missingValue": {"sentinel": ""},
                },
            },
        ],
    }
)
ROWS = [["1", "anna", "1980"], ["2", "bob", ""], ["3", "", "2001"], ["4", "anna", "1980"]]


def _frame(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "name", "year"])


def test_frames_and_row_lists_give_the_same_clks() -> None:
    clks = encode_clkhash(SCHEMA, ROWS, secret=SECRET)
    assert clks.shape == (4, 8) and clks.dtype == np.uint64 and clks.flags.c_contiguous
    np.testing.assert_array_equal(encode_clkhash(SCHEMA, _frame(), secret=SECRET), clks)
    np.testing.assert_array_equal(clks[0], clks[3])
    assert clks[0].any() and clks[2].any()


def test_arrow_tables_give_the_frames_clks_in_chunks_and_refuse_other_types() -> None:
    import pyarrow as pa

    table = pa.table(
        {name: [row[i] for row in ROWS] for i, name in enumerate(["id", "name", "year"])}
    )
    expected = encode_clkhash(SCHEMA, ROWS, secret=SECRET)
    np.testing.assert_array_equal(encode_clkhash(SCHEMA, table, secret=SECRET), expected)
    encoder = ClkhashEncoder(SCHEMA, secret=SECRET)  # a chunked column, and a slice of a table
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=3))
    np.testing.assert_array_equal(encoder.encode(chunked), expected)
    np.testing.assert_array_equal(encoder.encode(table.slice(1, 2), first_row=1), expected[1:3])
    nulls = table.set_column(1, "name", pa.array(["anna", "bob", None, "anna"]))
    np.testing.assert_array_equal(encode_clkhash(SCHEMA, nulls, secret=SECRET), expected)
    years = table.set_column(2, "year", pa.array([1980, None, 2001, 1980]))
    with pytest.raises(InputDataError, match="column 'year': values must be strings, found int64"):
        encode_clkhash(SCHEMA, years, secret=SECRET)
    with pytest.raises(InputDataError, match="column 1: 'surname' where the schema has 'name'"):
        encode_clkhash(SCHEMA, table.rename_columns(["id", "surname", "year"]), secret=SECRET)


def test_missing_cells_read_as_empty_strings() -> None:
    frame = _frame()
    frame.loc[2, "name"] = None
    frame.loc[1, "year"] = np.nan
    np.testing.assert_array_equal(
        encode_clkhash(SCHEMA, frame, secret=SECRET), encode_clkhash(SCHEMA, ROWS, secret=SECRET)
    )


def test_str_and_bytes_secrets_agree_and_an_empty_one_is_refused() -> None:
    np.testing.assert_array_equal(
        encode_clkhash(SCHEMA, ROWS, secret=SECRET),
        encode_clkhash(SCHEMA, ROWS, secret=SECRET.encode("utf-8")),
    )
    assert (
        encode_clkhash(SCHEMA, ROWS, secret="other") != encode_clkhash(SCHEMA, ROWS, secret=SECRET)
    ).any()
    with pytest.raises(AuthError, match="empty"):
        encode_clkhash(SCHEMA, ROWS, secret="")


def test_chunks_progress_and_reused_encoders(monkeypatch) -> None:
    rows = [[str(i), f"name{i % 7}", str(1900 + i % 50)] for i in range(50)]
    whole = encode_clkhash(SCHEMA, rows, secret=SECRET)
    monkeypatch.setattr("oda_fed.encoding.clkhash.CHUNK_ROWS", 8)
    seen: list[int] = []
    np.testing.assert_array_equal(
        encode_clkhash(SCHEMA, rows, secret=SECRET, progress=seen.append), whole
    )
    assert seen == [8, 16, 24, 32, 40, 48, 50]
    encoder = ClkhashEncoder(SCHEMA, secret=SECRET)
    for lo in (0, 20, 40):
        np.testing.assert_array_equal(encoder.encode(rows[lo : lo + 20]), whole[lo : lo + 20])


def test_errors_name_the_row_counting_across_chunks(monkeypatch) -> None:
    rows = [[str(i), "ok", "1999"] for i in range(30)]
    rows[17][2] = "1850"
    monkeypatch.setattr("oda_fed.encoding.clkhash.CHUNK_ROWS", 8)
    with pytest.raises(
        InputDataError,
        match=r"row 17 \(counting from 0\), column 'year': invalid: "
        r"is less than the minimum 1900: '1850'",
    ):
        encode_clkhash(SCHEMA, rows, secret=SECRET)
    with pytest.raises(InputDataError, match="row 20 "):
        ClkhashEncoder(SCHEMA, secret=SECRET).encode(rows[10:], first_row=13)


def test_the_first_bad_row_is_reported_whatever_its_column() -> None:
    rows = [["0", "ok", "1999"], ["1", "ok", "12"], ["2", "x" * 30, "1999"]]
    with pytest.raises(InputDataError, match="row 1 .*'year'"):
        encode_clkhash(SCHEMA, rows, secret=SECRET)


def test_the_shape_of_the_input_is_checked() -> None:
    with pytest.raises(
        InputDataError,
        match=r"row 1 \(counting from 0\) has 2 entries; "
        r"the schema has 3 features",
    ):
        encode_clkhash(SCHEMA, [ROWS[0], ["2", "bob"]], secret=SECRET)
    renamed = _frame().rename(columns={"year": "yob"})
    with pytest.raises(InputDataError, match="column 2: 'yob' where the schema has 'year'"):
        encode_clkhash(SCHEMA, renamed, secret=SECRET)
    with pytest.raises(InputDataError, match="2 columns where the schema has 3"):
        encode_clkhash(SCHEMA, _frame()[["id", "name"]], secret=SECRET)
    with pytest.raises(InputDataError, match="2 columns where the schema has 3"):
        encode_clkhash(SCHEMA, _frame()[["id", "name"]].iloc[:0], secret=SECRET)
    numbers = _frame()
    numbers["year"] = [1980, 1990, 2000, 2010]
    with pytest.raises(InputDataError, match="column 'year': values must be strings, found a int"):
        encode_clkhash(SCHEMA, numbers, secret=SECRET)


def test_no_rows() -> None:
    assert encode_clkhash(SCHEMA, [], secret=SECRET).shape == (0, 8)
    assert encode_clkhash(SCHEMA, _frame().iloc[:0], secret=SECRET).shape == (0, 8)
