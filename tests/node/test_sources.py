"""A partner's extract as CSV in any encoding and delimiter, Parquet or xlsx: the same records.

Each format is written for real to a temporary folder, read back through the one entry point
(:func:`oda_fed.node.sources.read_source`) and prepared; every failure is an
:class:`InputDataError` that says what to do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oda_fed.config import NodeSource, Project, load_node_config
from oda_fed.errors import ConfigError, InputDataError
from oda_fed.node import check
from oda_fed.node.reading import _read_csv_pandas
from oda_fed.node.sources import (
    EmptyExtractError,
    PreparedSource,
    ReadOptions,
    count_rows,
    iter_prepared,
    layout_for,
    prepare,
    read_csv,
    read_source,
)

PROJECT = Project.model_validate(
    {
        "name": "formats",
        "title": "Formats",
        "purpose": "test",
        "legal_gateway": "test",
        "partners": [{"id": "council", "name": "Council"}, {"id": "police", "name": "Police"}],
        "linkage": {
            "fields": [
                {"name": "first_name", "type": "name"},
                {"name": "last_name", "type": "name"},
                {"name": "date_of_birth", "type": "date_of_birth"},
                {"name": "postcode", "type": "postcode"},
            ]
        },
    }
)

#: One table, as its CSV text says it: the other formats hold ints, dates and nulls for these.
IDS = [101, 102, 103, 104, 105]
FIRST = ["Zoë", "Siân", "John", "Mary", "Ifan"]
LAST = ["O'Brien", "Jones", "Nicholson", "Smith", "Huws"]
DOB = [dt.date(1990, 1, 2), dt.date(1985, 12, 31), dt.date(2001, 7, 4), None, dt.date(1970, 3, 9)]
POSTCODE = ["SW1A 1AA", "CF10 1AA", None, "M8 3SN", "LL55 4UR"]
HOUSEHOLD = [3, 1, None, 2, 5]
NOTE = ["owes £5", "", "café visit", "£12.50 paid", "none"]


def as_text(value: object) -> str:
    return "" if value is None else value.isoformat() if isinstance(value, dt.date) else str(value)


def frame() -> pd.DataFrame:
    columns = {
        "person_ref": IDS,
        "forename": FIRST,
        "surname": LAST,
        "dob": DOB,
        "postcode": POSTCODE,
        "household": HOUSEHOLD,
        "note": NOTE,
    }
    return pd.DataFrame({k: [as_text(v) for v in vs] for k, vs in columns.items()})


def write_csv(path: Path, *, encoding: str = "utf-8", delimiter: str = ",") -> Path:
    frame().to_csv(path, index=False, encoding=encoding, sep=delimiter)
    return path


def write_parquet(path: Path, *, row_group_size: int | None = None) -> Path:
    table = pa.table(
        {
            "person_ref": pa.array(IDS, pa.int64()),
            "forename": FIRST,
            "surname": LAST,
            "dob": pa.array(DOB, pa.date32()),
            "postcode": pa.array(POSTCODE, pa.string()),
            "household": pa.array(HOUSEHOLD, pa.int64()),
            "note": NOTE,
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_xlsx(path: Path, *, sheet: str = "Extract", blank_sheet_first: bool = False) -> Path:
    book = openpyxl.Workbook()
    if blank_sheet_first:
        book.active.title = "Notes"
        worksheet = book.create_sheet(sheet)
    else:
        worksheet = book.active
        worksheet.title = sheet
    worksheet.append(list(frame().columns))
    for row in zip(IDS, FIRST, LAST, DOB, POSTCODE, HOUSEHOLD, NOTE, strict=True):
        ref, first, last, dob, postcode, household, note = row
        # Whole numbers as Excel holds them (floats), dates as date cells, empty cells as None.
        household = None if household is None else float(household)
        worksheet.append([ref, first, last, dob, postcode, household, note or None])
    book.save(path)
    return path


def write_postgres(url: str) -> str:
    """The table in a PostgreSQL database, typed as a partner's system holds it: integers, text,
    a date and NULLs; the query that reads it back."""
    import sqlalchemy as sa

    people = sa.Table(
        "people",
        sa.MetaData(),
        sa.Column("person_ref", sa.Integer, primary_key=True),
        *(sa.Column(c, sa.Text) for c in ("forename", "surname")),
        sa.Column("dob", sa.Date),
        sa.Column("postcode", sa.Text),
        sa.Column("household", sa.Integer),
        sa.Column("note", sa.Text),
    )
    engine = sa.create_engine(url)
    try:
        with engine.begin() as db:
            people.create(db)
            rows = zip(IDS, FIRST, LAST, DOB, POSTCODE, HOUSEHOLD, NOTE, strict=True)
            db.execute(people.insert(), [dict(zip(people.c.keys(), r, strict=True)) for r in rows])
    finally:
        engine.dispose()
    return "SELECT * FROM people ORDER BY person_ref"


def source(path: Path | None, **read: object) -> NodeSource:
    return NodeSource.model_validate(
        {
            "path": path,
            "record_id": "person_ref",
            "columns": {"first_name": "forename", "last_name": "surname", "date_of_birth": "dob"},
            "attributes": {"household": "household", "note": "note"},
            "date_format": "%Y-%m-%d",
            **read,
        }
    )


def prepared(path: Path, *, chunk_rows: int = 100_000, **read: object) -> PreparedSource:
    layout = layout_for(PROJECT, "council", source(path, **read))
    chunks = list(iter_prepared(path, project=PROJECT, layout=layout, chunk_rows=chunk_rows))
    if len(chunks) == 1:
        return chunks[0]
    first = chunks[0]
    return PreparedSource(
        path=path,
        record_ids=pd.concat([pd.Series(c.record_ids) for c in chunks]).to_numpy(dtype=object),
        fields={f: [v for c in chunks for v in c.fields[f]] for f in first.fields},
        attributes={a: [v for c in chunks for v in c.attributes[a]] for a in first.attributes},
        missing={f: sum(c.missing[f] for c in chunks) for f in first.missing},
        invalid={f: sum(c.invalid[f] for c in chunks) for f in first.invalid},
    )


def same(a: PreparedSource, b: PreparedSource) -> None:
    assert a.record_ids.tolist() == b.record_ids.tolist()
    assert a.fields == b.fields
    assert a.attributes == b.attributes
    assert a.missing == b.missing and a.invalid == b.invalid


@pytest.fixture
def reference(tmp_path: Path) -> PreparedSource:
    return prepared(write_csv(tmp_path / "utf8.csv"))


def test_every_format_prepares_to_the_same_records(tmp_path: Path, reference) -> None:
    assert reference.record_ids.tolist() == [str(i) for i in IDS]
    assert reference.attributes["note"][0] == "owes £5" and reference.fields["first_name"][0]
    assert reference.attributes["household"] == ["3", "1", "", "2", "5"]
    assert reference.missing["date_of_birth"] == 1 and reference.missing["postcode"] == 1

    cp1252 = write_csv(tmp_path / "cp1252.csv", encoding="cp1252", delimiter=";")
    assert "Zoë".encode("cp1252") in cp1252.read_bytes()  # really not UTF-8
    same(reference, prepared(cp1252, encoding="cp1252", delimiter=";"))
    tabs = write_csv(tmp_path / "tabs.txt", delimiter="\t")
    same(reference, prepared(tabs, delimiter="\t"))
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + write_csv(tmp_path / "plain.csv").read_bytes())
    same(reference, prepared(bom))  # a byte-order mark is still accepted

    same(reference, prepared(write_parquet(tmp_path / "extract.parquet")))
    same(reference, prepared(write_parquet(tmp_path / "extract.pq"), format="parquet"))
    same(reference, prepared(write_xlsx(tmp_path / "extract.xlsx")))
    named = write_xlsx(tmp_path / "named.xlsx", sheet="People", blank_sheet_first=True)
    same(reference, prepared(named, sheet="People"))


@pytest.mark.parametrize("chunk_rows", [2, 100_000])
def test_a_postgresql_table_prepares_to_the_same_records(
    postgres_url: str, reference, chunk_rows: int
) -> None:
    query = write_postgres(postgres_url)
    sql = {"path": None, "format": "sql", "url": postgres_url, "query": query}
    layout = layout_for(PROJECT, "council", source(**sql))
    label = Path("council")
    chunks = list(iter_prepared(label, project=PROJECT, layout=layout, chunk_rows=chunk_rows))
    assert len(chunks) == -(-len(IDS) // min(chunk_rows, len(IDS)))
    same(reference, prepare(label, project=PROJECT, layout=layout))
    (read,) = list(read_source(label, options=layout.read))
    assert read.to_dict("list") == frame().to_dict("list")  # text, as the CSV says it
    assert count_rows(label, layout.read) == len(IDS)


def test_a_csv_s_rows_are_counted_across_read_blocks(tmp_path: Path) -> None:
    # The count reads 4 MiB at a time into one buffer: a block's stale tail must not count.
    path = tmp_path / "big.csv"
    rows = 400_000  # 22 bytes a row: two full blocks and a short third
    path.write_text("id,name\n" + "".join(f"{i:08d},someone else\n" for i in range(rows)))
    assert path.stat().st_size > 2 * (1 << 22)
    assert count_rows(path) == rows
    with path.open("a") as fh:
        fh.write("last,no line end")
    assert count_rows(path) == rows  # line ends counted: the progress total only


def test_parquet_and_xlsx_read_as_text_like_csv(tmp_path: Path) -> None:
    expected = frame()
    for path in (write_parquet(tmp_path / "a.parquet"), write_xlsx(tmp_path / "a.xlsx")):
        (read,) = list(read_source(path))
        assert read.columns.tolist() == expected.columns.tolist()
        assert read.to_dict("list") == expected.to_dict("list")
        assert all(isinstance(v, str) for v in read.to_numpy().ravel())
        assert count_rows(path) == len(IDS)


def test_timestamps_and_floats_in_parquet_read_as_iso_dates_and_whole_numbers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.parquet"
    stamps = [dt.datetime(1990, 1, 2), dt.datetime(2020, 5, 6, 7, 8, 9), None]
    pq.write_table(pa.table({"at": stamps, "n": [3.0, 2.5, float("nan")]}), path)
    (read,) = list(read_source(path))
    assert read["at"].tolist() == ["1990-01-02", "2020-05-06T07:08:09", ""]
    assert read["n"].tolist() == ["3", "2.5", ""]


@pytest.mark.parametrize("chunk_rows", [1, 2, 3])
def test_parquet_in_chunks_prepares_as_one_chunk(tmp_path: Path, chunk_rows: int) -> None:
    path = write_parquet(tmp_path / "extract.parquet", row_group_size=2)
    frames = list(read_source(path, chunk_rows=chunk_rows))
    assert len(frames) == -(-len(IDS) // chunk_rows)
    same(prepared(path, chunk_rows=1_000_000), prepared(path, chunk_rows=chunk_rows))


def test_xlsx_in_chunks_prepares_as_one_chunk(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "extract.xlsx")
    assert len(list(read_source(path, chunk_rows=2))) == 3
    same(prepared(path), prepared(path, chunk_rows=2))


def test_format_follows_the_suffix_unless_given() -> None:
    options = ReadOptions()
    assert [options.format_of(Path(f"x{s}")) for s in (".csv", ".TXT", ".pq", ".xlsx", ".dat")] == [
        "csv",
        "csv",
        "parquet",
        "xlsx",
        "csv",
    ]
    assert ReadOptions(format="parquet").format_of(Path("x.csv")) == "parquet"


def failure(tmp_path: Path, path: Path, **read: object) -> str:
    """The message of the InputDataError preparing ``path`` gives; nothing is left behind."""
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InputDataError) as caught:
        prepared(path, **read)
    assert sorted(tmp_path.rglob("*")) == before
    return str(caught.value)


@pytest.mark.parametrize("name", ["gone.csv", "gone.parquet", "gone.xlsx"])
def test_a_missing_file_says_so(tmp_path: Path, name: str) -> None:
    said = failure(tmp_path, tmp_path / name)
    assert f"{name}: file not found" in said and "node.toml [source]" in said


def test_a_file_in_another_encoding_names_it_and_the_fix(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "council.csv", encoding="cp1252")
    said = failure(tmp_path, path)
    assert "cannot be read as utf-8 text" in said
    assert "line 2" in said and "byte " in said  # where: Zoë's ë, on the first record's line
    assert 'encoding = "cp1252"' in said and "export the file again as UTF-8" in said


def test_a_file_with_another_delimiter_says_which(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "council.csv", delimiter=";")
    said = failure(tmp_path, path)
    assert "no column 'person_ref'" in said
    assert "The header looks ';'-separated: set delimiter = ';'" in said
    tabs = write_csv(tmp_path / "tabs.csv", delimiter="\t")
    assert "set delimiter = '\\t'" in failure(tmp_path, tabs, delimiter=";")


def test_a_missing_column_names_it(tmp_path: Path) -> None:
    path = tmp_path / "council.parquet"
    pq.write_table(pa.table({"person_ref": [1], "forename": ["A"]}), path)
    said = failure(tmp_path, path)
    assert "no column 'surname' (mapped from field 'last_name')" in said
    assert "looks" not in said  # no delimiter hint for a Parquet file


def test_a_truncated_parquet_file_is_unreadable(tmp_path: Path) -> None:
    whole = write_parquet(tmp_path / "whole.parquet").read_bytes()
    path = tmp_path / "council.parquet"
    path.write_bytes(whole[: len(whole) // 2])
    said = failure(tmp_path, path)
    assert "not a readable Parquet file" in said and "Export or save it again" in said


def test_a_text_file_named_xlsx_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "council.xlsx"
    path.write_text(frame().to_csv(index=False))
    said = failure(tmp_path, path)
    assert "not a readable .xlsx workbook" in said and "format in node.toml [source]" in said


def test_an_unknown_sheet_lists_the_sheets(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "council.xlsx", sheet="People", blank_sheet_first=True)
    said = failure(tmp_path, path, sheet="Persons")
    assert "no sheet 'Persons'; the workbook has Notes, People" in said
    assert "Set sheet in node.toml [source]" in said


def test_an_old_excel_file_names_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "council.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    said = failure(tmp_path, path)
    assert "save it as .xlsx" in said and "csv, parquet, xlsx" in said


def test_unknown_settings_are_refused_with_what_is_supported(tmp_path: Path) -> None:
    def load(**read: str) -> str:
        toml = tmp_path / "node.toml"
        keys = "".join(f'{k} = "{v}"\n' for k, v in read.items())
        toml.write_text(
            'partner = "council"\nproject = "p.toml"\nproject_fingerprint = "sha256:'
            + "0" * 64
            + '"\nworkdir = "w"\n[coordinator]\naddress = "a:1"\n'
            '[tls]\nca = "ca"\ncert = "c"\nkey = "k"\n'
            f'[source]\npath = "x.csv"\n{keys}'
        )
        with pytest.raises(ConfigError) as caught:
            load_node_config(toml)
        return str(caught.value)

    assert "format 'xls' is not supported: use one of csv, parquet, xlsx" in load(format="xls")
    assert "unknown encoding 'latin-9x'" in load(encoding="latin-9x")
    assert "the delimiter must be one character" in load(delimiter=";;")


@pytest.fixture
def check_extract(tmp_path: Path, node_config) -> Callable[..., tuple[None, str]]:
    """`oda-fed node check`'s extract check of the council's node, reading ``path``."""

    def extract(path: Path, **read: object) -> tuple[None, str]:
        config, loaded = node_config(
            tmp_path, PROJECT, partner="council", source=source(path, **read).model_dump()
        )
        return check._extract(config, loaded)

    return extract


def test_node_check_reads_each_format(tmp_path: Path, check_extract) -> None:
    for path, read in [
        (write_csv(tmp_path / "c.csv", encoding="cp1252", delimiter=";"), {"encoding": "cp1252",
                                                                            "delimiter": ";"}),
        (write_parquet(tmp_path / "c.parquet"), {}),
        (write_xlsx(tmp_path / "c.xlsx", sheet="People", blank_sheet_first=True),
         {"sheet": "People"}),
    ]:  # fmt: skip
        _, said = check_extract(path, **read)
        assert f"{len(IDS)} records; every mapped column is there" in said


def test_node_check_finds_an_empty_extract_in_each_format(tmp_path: Path, check_extract) -> None:
    csv = tmp_path / "empty.csv"
    frame().head(0).to_csv(csv, index=False)
    parquet = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pandas(frame().head(0), preserve_index=False), parquet)
    xlsx = tmp_path / "empty.xlsx"
    book = openpyxl.Workbook()
    book.active.append(list(frame().columns))
    book.active.append([None] * len(frame().columns))  # a blank row is no record
    book.save(xlsx)
    for path in (csv, parquet, xlsx):
        with pytest.raises(EmptyExtractError, match="has a header but no records"):
            check_extract(path)
        layout = layout_for(PROJECT, "council", source(path))
        assert len(prepare(path, project=PROJECT, layout=layout)) == 0


def test_node_check_says_when_the_delimiter_is_wrong(tmp_path: Path, check_extract) -> None:
    path = write_csv(tmp_path / "c.csv", delimiter=";")
    with pytest.raises(InputDataError, match="set delimiter = ';'"):
        check_extract(path)


def test_an_xlsx_with_dates_under_another_date_format_says_to_set_iso(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "council.xlsx")
    said = failure(tmp_path, path, date_format="%d/%m/%Y")
    assert "row 2, column 'dob'" in said
    assert "read as YYYY-MM-DD, not '%d/%m/%Y': set date_format = \"%Y-%m-%d\"" in said


# CSVs that Arrow's reader must read as pandas' does, or hand over to pandas: quoted delimiters,
# quotes and line ends, a byte-order mark, blank lines, empty cells, leading zeros, a header only,
# ragged rows, column names empty or repeated, stray quotes and spaces.
TRICKY_CSVS = {
    "quoted": b'a,b,c\n"x, y","say ""hi""","two\nlines"\n007,,\n',
    "bom and crlf": b"\xef\xbb\xbfa,b\r\n1,\r\n\r\n,2\r\n",
    "header only": b"a,b\n",
    "short row": b"a,b,c\n1,2,3\n4,5\n6,7,8\n",
    "long row": b"a,b\n1,2\n3,4,5\n",
    "repeated names": b"a,a,b\n1,2,3\n",
    "unnamed column": b",a\n0,x\n",
    "blank first line": b"\na,b\n1,2\n",
    "quotes inside and after": b'a,b\nx"y,"z" \n"p"q,r\n',
    "spaces": b"a,b\n  ,\t\n x , y \n",
    "semicolons": b"a;b\n1;x,y\n",
}


@pytest.mark.parametrize("name", TRICKY_CSVS)
@pytest.mark.parametrize("chunk_rows", [None, 1, 2, 100])
def test_csv_reads_as_pandas_reads_it(tmp_path: Path, name: str, chunk_rows: int | None) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(TRICKY_CSVS[name])
    delimiter = ";" if name == "semicolons" else ","
    options = {"chunk_rows": chunk_rows, "encoding": "utf-8", "delimiter": delimiter}

    def frames(reader: Callable) -> list[pd.DataFrame] | str:
        try:
            return list(reader(path, **options))
        except InputDataError as exc:
            return str(exc)

    got, expected = frames(read_csv), frames(_read_csv_pandas)
    if isinstance(expected, str):
        assert got == expected
        return
    assert pd.concat(got).shape == pd.concat(expected).shape
    pd.testing.assert_frame_equal(pd.concat(got), pd.concat(expected))
    assert [len(f) for f in got] == [len(f) for f in expected]


def test_csv_in_another_encoding_reads_as_pandas_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes("name,town\nRenée,Zoë\n".encode("cp1252"))
    got = pd.concat(read_csv(path, chunk_rows=10, encoding="cp1252"))
    expected = pd.concat(_read_csv_pandas(path, chunk_rows=10, encoding="cp1252", delimiter=","))
    pd.testing.assert_frame_equal(got, expected)
    assert got.iloc[0].tolist() == ["Renée", "Zoë"]


def test_a_large_csv_is_read_in_blocks_as_pandas_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the size read in one go, Arrow reads blocks; the frames are still chunk_rows each.
    monkeypatch.setattr("oda_fed.node.reading._CSV_WHOLE_BYTES", 100)
    monkeypatch.setattr("oda_fed.node.reading._CSV_BLOCK_BYTES", 64)
    path = tmp_path / "in.csv"
    path.write_text("a,b\n" + "".join(f'{i:04d},"x\ny{i}"\n' for i in range(50)))
    got = list(read_csv(path, chunk_rows=7))
    expected = list(_read_csv_pandas(path, chunk_rows=7, encoding="utf-8", delimiter=","))
    assert [len(f) for f in got] == [len(f) for f in expected]
    pd.testing.assert_frame_equal(pd.concat(got), pd.concat(expected))


def _as_tables(path: Path, **options) -> list[pa.Table] | str:
    from oda_fed.node.reading import read_tables

    try:
        return list(read_tables(path, **options))
    except InputDataError as exc:
        return str(exc)


def _as_frames(path: Path, **options) -> list[pd.DataFrame] | str:
    try:
        return list(read_source(path, **options))
    except InputDataError as exc:
        return str(exc)


def _same_text(tables: list[pa.Table] | str, frames: list[pd.DataFrame] | str) -> None:
    if isinstance(frames, str):
        assert tables == frames
        return
    assert [t.num_rows for t in tables] == [len(f) for f in frames]
    for table, frame_ in zip(tables, frames, strict=True):
        assert table.column_names == [str(c) for c in frame_.columns]
        assert all(pa.types.is_string(t) for t in table.schema.types)
        assert table.to_pydict() == frame_.to_dict("list")


@pytest.mark.parametrize("name", TRICKY_CSVS)
@pytest.mark.parametrize("chunk_rows", [None, 2])
def test_csv_as_arrow_tables_holds_the_frames_text(
    tmp_path: Path, name: str, chunk_rows: int | None
) -> None:
    # What a clkhash schema encodes from (without pandas where Arrow can parse the file): the
    # same text, chunks and errors as the frames the project's preparation reads.
    path = tmp_path / "in.csv"
    path.write_bytes(TRICKY_CSVS[name])
    read = ReadOptions(delimiter=";" if name == "semicolons" else ",")
    options = {"chunk_rows": chunk_rows, "options": read}
    _same_text(_as_tables(path, **options), _as_frames(path, **options))


def test_every_format_as_arrow_tables_holds_the_frames_text(tmp_path: Path) -> None:
    paths = [
        (write_csv(tmp_path / "c.csv", encoding="cp1252", delimiter=";"),
         ReadOptions(encoding="cp1252", delimiter=";")),
        (write_parquet(tmp_path / "p.parquet", row_group_size=2), ReadOptions()),
        (write_xlsx(tmp_path / "x.xlsx"), ReadOptions()),
        (tmp_path / "missing.csv", ReadOptions()),
        (tmp_path / "missing.parquet", ReadOptions()),
    ]  # fmt: skip
    (tmp_path / "empty.parquet").write_bytes(b"")
    paths.append((tmp_path / "empty.parquet", ReadOptions()))
    for path, read in paths:
        for chunk_rows in (None, 2):
            options = {"chunk_rows": chunk_rows, "options": read}
            _same_text(_as_tables(path, **options), _as_frames(path, **options))
    (table,) = _as_tables(tmp_path / "c.csv", options=paths[0][1])
    assert table.column("forename").to_pylist() == FIRST


def test_a_csv_in_a_mistaken_encoding_is_refused_as_tables_too(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes("name\nRenée\n".encode("cp1252"))
    said = _as_tables(path)
    assert isinstance(said, str) and "cannot be read as utf-8 text" in said
    assert said == _as_frames(path)
