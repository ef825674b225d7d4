"""Chunked encoding: same CLKs whatever the chunk size, errors name the right row, both formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.feather as feather
import pytest

from oda_fed.config import load_project
from oda_fed.errors import InputDataError
from oda_fed.node.encode import encode_clkhash_file, encode_file, write_encoded
from oda_fed.node.sources import layout_for


@pytest.fixture(scope="module")
def synth(tmp_path_factory, synth_folder) -> Path:
    out = tmp_path_factory.mktemp("synth")
    return synth_folder(out, population=800, partners=2, seed=2, errors="medium")


SECRET = b"k" * 32


def encode(synth: Path, path: Path, chunk_rows: int, progress=None):
    project = load_project(synth / "project.toml").project
    return encode_file(
        path,
        project=project,
        layout=layout_for(project, "council"),
        secret=SECRET,
        chunk_rows=chunk_rows,
        progress=progress,
    )


def test_chunk_size_does_not_change_the_result(synth: Path) -> None:
    seen = []
    whole = encode(synth, synth / "council.csv", 1_000_000)
    chunked = encode(synth, synth / "council.csv", 97, progress=lambda d, t: seen.append((d, t)))
    assert np.array_equal(whole.clks, chunked.clks)
    assert list(whole.record_ids) == list(chunked.record_ids)
    assert whole.missing == chunked.missing and whole.attributes == chunked.attributes
    assert seen[-1] == (len(whole), len(whole)) and len(seen) == -(-len(whole) // 97)


def test_an_error_in_a_later_chunk_names_its_csv_row(synth: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(synth / "council.csv", dtype=str, keep_default_na=False)
    frame.loc[250, "dob"] = "not a date"
    bad = tmp_path / "council.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(InputDataError, match=r"row 252, column 'dob'"):
        encode(synth, bad, 100)


def test_a_repeated_id_across_chunks_is_caught(synth: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(synth / "council.csv", dtype=str, keep_default_na=False)
    frame.loc[300, "person_ref"] = frame.loc[5, "person_ref"]
    bad = tmp_path / "council.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(InputDataError, match="repeated record id"):
        encode(synth, bad, 100)


def test_npy_and_arrow_outputs(synth: Path, tmp_path: Path) -> None:
    encoded = encode(synth, synth / "council.csv", 500)
    npy = write_encoded(encoded, tmp_path / "c.npy", fmt="npy")
    assert np.array_equal(np.load(npy), encoded.clks)
    table = feather.read_table(write_encoded(encoded, tmp_path / "c.arrow", fmt="arrow"))
    assert table.column("record_id").to_pylist() == list(encoded.record_ids)
    raw = b"".join(table.column("clk").to_pylist())
    back = np.frombuffer(raw, dtype="<u8").reshape(encoded.clks.shape)
    assert np.array_equal(back, encoded.clks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.arrow", "c.npy"]


# --- clkhash schemas ------------------------------------------------------------------------------

CLKHASH_SCHEMA = {
    "version": 3,
    "clkConfig": {"l": 100, "kdf": {"type": "HKDF"}},
    "features": [
        {"identifier": "id", "ignored": True},
        {
            "identifier": "name",
            "format": {"type": "string"},
            "hashing": {
                "comparison": {"type": "ngram", "n": 2},
                "strategy": {"bitsPerToken": 5},
                "hash": {"type": "doubleHash"},  # blakeHash needs a power-of-two length
            },
        },
    ],
}


def test_a_clkhash_file_in_chunks_gives_clkhash_s_bits_of_the_whole(tmp_path: Path) -> None:
    from oda_fed.encoding import encode_clkhash
    from oda_fed.encoding.clkhash_schema import parse_clkhash_schema

    schema = parse_clkhash_schema(CLKHASH_SCHEMA)
    rows = [[f"r{i}", name] for i, name in enumerate(["anna", "bob", "", "zoë", "anna"] * 3)]
    path = tmp_path / "people.csv"
    pd.DataFrame(rows, columns=["id", "name"]).to_csv(path, index=False)
    seen = []
    encoded = encode_clkhash_file(
        path, schema=schema, secret="s", chunk_rows=4, progress=lambda d, t: seen.append((d, t))
    )
    np.testing.assert_array_equal(encoded.clks, encode_clkhash(schema, rows, secret="s"))
    assert encoded.clks.shape == (15, 2)  # 100 bits in two words
    assert list(encoded.record_ids) == [str(i) for i in range(15)]  # row numbers, not "id"
    assert seen == [(4, 15), (8, 15), (12, 15), (15, 15)]
    assert encoded.attributes == encoded.missing == encoded.tokens == {}


@pytest.mark.parametrize(
    "text",
    [
        'id,name\n1,"an\nna"\n2,"b\no\nb"\n3,zoë\n4,anna\n5,"x\ny"\n',  # lines counted > rows
        "id,name\n1,anna\n2,bob\n3,zoë\n4,anna\n5,eve",  # no last line end: counted < rows
        "id,name\r\n1,anna\r\n2,\r\n3,zoë\r\n4,anna\r\n5,eve\r\n",  # counted exactly
    ],
)
def test_a_clkhash_file_s_clks_do_not_depend_on_its_counted_rows(tmp_path: Path, text) -> None:
    # With progress shown, the rows are counted from line ends and the chunks are encoded into
    # an array of that size, spilling past it when the count was short.
    from oda_fed.encoding import encode_clkhash
    from oda_fed.encoding.clkhash_schema import parse_clkhash_schema

    schema = parse_clkhash_schema(CLKHASH_SCHEMA)
    path = tmp_path / "people.csv"
    path.write_bytes(text.encode("utf-8"))
    rows = pd.read_csv(path, dtype=str, keep_default_na=False).values.tolist()
    expected = encode_clkhash(schema, rows, secret="s")
    seen: list[int] = []  # the totals the progress bar was given
    for chunk_rows in (2, 4, 100):
        shown = encode_clkhash_file(
            path,
            schema=schema,
            secret="s",
            chunk_rows=chunk_rows,
            progress=lambda d, t: seen.append(t),
        )
        np.testing.assert_array_equal(shown.clks, expected)
        np.testing.assert_array_equal(
            encode_clkhash_file(path, schema=schema, secret="s", chunk_rows=chunk_rows).clks,
            expected,
        )
        assert seen[-1] == 5 and shown.clks.shape == (5, 2)  # the bar ends full
        seen.clear()


def test_a_clkhash_file_with_other_columns_or_no_rows(tmp_path: Path) -> None:
    from oda_fed.encoding.clkhash_schema import parse_clkhash_schema

    schema = parse_clkhash_schema(CLKHASH_SCHEMA)
    (tmp_path / "empty.csv").write_text("id,name\n")
    empty = encode_clkhash_file(tmp_path / "empty.csv", schema=schema, secret="s")
    assert empty.clks.shape == (0, 2) and empty.clks.dtype == np.uint64
    (tmp_path / "other.csv").write_text("id,surname\n1,smith\n")
    with pytest.raises(InputDataError, match="column 1: 'surname' where the schema has 'name'"):
        encode_clkhash_file(tmp_path / "other.csv", schema=schema, secret="s")


def test_a_malformed_value_kept_still_gives_evidence(synth: Path, tmp_path: Path) -> None:
    """Under on_invalid = "keep" a malformed date keeps its digits: 29/02/2009 still agrees with
    2009-02-28 in year and month (CLK and tokens), and day/month-swapped 1980-31-12 with
    1980-12-31 in the swap token. Under "missing" both would be lost."""
    from dataclasses import replace

    from oda_fed.matching.kernels import pair_intersections, popcounts

    frame = pd.read_csv(synth / "council.csv", dtype=str, keep_default_na=False).head(6)
    frame["dob"] = ["29/02/2009", "28/02/2009", "1980-31-12", "31/12/1980", "n/k", "01/01/1990"]
    path = tmp_path / "council.csv"
    frame.to_csv(path, index=False)
    text = (synth / "project.toml").read_text().replace("[linkage]", '[linkage]\nmethod = "fields"')
    (tmp_path / "project.toml").write_text(text)
    project = load_project(tmp_path / "project.toml").project
    layout = layout_for(project, "council")

    def encoded(on_invalid: str):
        return encode_file(path, project=project, layout=replace(layout, on_invalid=on_invalid),
                           secret=SECRET)  # fmt: skip

    kept, dropped = encoded("keep"), encoded("missing")
    assert kept.invalid["date_of_birth"] == dropped.invalid["date_of_birth"] == 3
    assert kept.missing["date_of_birth"] == dropped.missing["date_of_birth"] == 0

    def dice(clks: np.ndarray, i: int, j: int) -> float:
        pc = popcounts(clks)
        both = pair_intersections(clks, clks, np.array([i]), np.array([j]))[0]
        return 2 * both / (pc[i] + pc[j])

    assert dice(kept.clks, 0, 1) > dice(dropped.clks, 0, 1)
    assert dice(kept.clks, 2, 3) > dice(dropped.clks, 2, 3)
    tok, lost = kept.evidence.tokens, dropped.evidence.tokens
    assert (
        tok["date_of_birth:ym"][0] == tok["date_of_birth:ym"][1] != 0
        and lost["date_of_birth:ym"][0] == 0
    )
    assert (
        tok["date_of_birth:swap"][2] == tok["date_of_birth:swap"][3] != 0
        and lost["date_of_birth:swap"][2] == 0
    )
    assert tok["date_of_birth:ymd"][4] == 0  # n/k says nothing of a birthday: nothing is kept


def test_a_file_of_jit_rows_or_more_is_encoded_by_the_numba_kernels_alike(
    synth: Path, tmp_path: Path, monkeypatch
) -> None:
    from oda_fed.encoding import jit_kernels, kernels
    from oda_fed.encoding.clkhash_schema import parse_clkhash_schema

    monkeypatch.setattr(kernels, "_JIT", None)
    with_numpy = encode(synth, synth / "council.csv", 97)
    schema = parse_clkhash_schema(CLKHASH_SCHEMA)
    path = tmp_path / "people.csv"
    pd.DataFrame({"id": ["1", "2", "3"], "name": ["anna", "zoë", ""]}).to_csv(path, index=False)
    clkhash_numpy = encode_clkhash_file(path, schema=schema, secret="s").clks
    assert kernels._JIT is None
    monkeypatch.setattr(kernels, "JIT_ROWS", 3)  # this file counts as long
    assert encode_clkhash_file(path, schema=schema, secret="s").clks.shape == (3, 2)
    assert kernels._JIT is None  # uncounted (no progress shown): the NumPy kernels
    np.testing.assert_array_equal(
        encode_clkhash_file(path, schema=schema, secret="s", progress=lambda d, t: None).clks,
        clkhash_numpy,
    )
    assert kernels._JIT is jit_kernels
    np.testing.assert_array_equal(encode(synth, synth / "council.csv", 97).clks, with_numpy.clks)
