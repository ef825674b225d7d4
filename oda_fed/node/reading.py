"""Read an extract as text columns: the formats and options, and the CSV reader.

Arrow parses a CSV; its text columns become pandas frames for the project's preparation
(:mod:`oda_fed.node.sources`), or stay Arrow tables (:func:`read_tables`) for a clkhash schema's
encoding, so that ``oda-fed encode --clkhash-schema`` never imports pandas (importing it was a
fifth of that whole process). Nothing here standardises a value.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from oda_fed.errors import InputDataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from oda_fed.config import NodeSource
    from oda_fed.node.sql import SqlQuery

#: The format a file's suffix implies when node.toml ``[source]`` leaves ``format`` out.
SUFFIX_FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
}


@dataclass(frozen=True)
class ReadOptions:
    """How to read an extract: node.toml ``[source]`` ``format``, ``encoding``, ``delimiter``
    and ``sheet``, or for ``format = "sql"`` its query. The defaults read UTF-8 comma-separated
    CSV, or go by the file's suffix."""

    format: str | None = None  # None: from the file's suffix
    encoding: str = "utf-8"  # CSV only; a UTF-8 byte-order mark is accepted
    delimiter: str = ","  # CSV only
    sheet: str | None = None  # xlsx only; None: the first sheet
    sql: SqlQuery | None = None  # sql only: the database and the query

    @classmethod
    def of(cls, source: NodeSource | None) -> ReadOptions:
        if source is None:
            return cls()
        sql = None
        if source.format == "sql":
            from oda_fed.node.sql import SqlQuery

            sql = SqlQuery(
                url=source.url or "",
                query=source.query,
                query_file=source.query_file,
                password_file=source.password_file,
                encoding=source.encoding,
            )
        return cls(
            format=source.format,
            encoding=source.encoding,
            delimiter=source.delimiter,
            sheet=source.sheet,
            sql=sql,
        )

    def format_of(self, path: Path) -> str:
        """The format ``path`` is read as; :class:`InputDataError` for one not supported."""
        if self.format is not None:
            if self.format not in _source_formats():
                raise InputDataError(
                    f"{path}: format '{self.format}' is not supported; the formats are "
                    f"{', '.join(_source_formats())} (set format in node.toml [source])"
                )
            return self.format
        suffix = Path(path).suffix.lower()
        if suffix == ".xls":
            raise InputDataError(
                f"{path}: an old Excel (.xls) workbook cannot be read; open it in Excel and save "
                "it as .xlsx, or export it as CSV (the formats read are "
                f"{', '.join(_source_formats())})"
            )
        return SUFFIX_FORMATS.get(suffix, "csv")

    def sql_query(self) -> SqlQuery:
        if self.sql is None:
            raise InputDataError(
                'format = "sql" needs url and query (or query_file) in node.toml [source]'
            )
        return self.sql


def read_tables(
    path: Path, *, chunk_rows: int | None = None, options: ReadOptions | None = None
) -> Iterator[pa.Table]:
    """An extract as Arrow tables of text columns, ``chunk_rows`` rows at a time: the values
    :func:`~oda_fed.node.sources.read_source` gives, without pandas for a CSV Arrow can parse.

    Examples
    --------
    >>> tables = read_tables(Path("people.csv"), chunk_rows=100_000)  # doctest: +SKIP
    """
    options = options or ReadOptions()
    if options.format_of(path) != "csv":
        from oda_fed.node.sources import read_source

        for frame in read_source(path, chunk_rows=chunk_rows, options=options):
            yield _table_of(frame)
        return
    if not Path(path).is_file():
        raise InputDataError(f"{path}: file not found; check the path in node.toml [source]")
    for part in _csv_parts(
        path, chunk_rows=chunk_rows, encoding=options.encoding, delimiter=options.delimiter
    ):
        yield part if _arrow(part) else _table_of(part)


# A CSV up to this size is parsed in one go, on every core; a larger one in blocks of
# _CSV_BLOCK_BYTES, so that memory holds a bounded amount of raw text whatever the file's size.
_CSV_WHOLE_BYTES = 256 << 20
_CSV_BLOCK_BYTES = 16 << 20


def read_csv(
    path: Path, *, chunk_rows: int | None = None, encoding: str = "utf-8", delimiter: str = ","
) -> Iterator[pd.DataFrame]:
    """Read a CSV as text columns, ``chunk_rows`` at a time (all at once when None).

    Arrow's CSV reader parses it (several times faster than pandas'). A file Arrow refuses (a
    ragged row, bytes that do not decode, no header, a column name empty or repeated) or a
    delimiter of more than one character is read by pandas instead, from the row Arrow stopped
    at, so that what is read and the errors raised are pandas': a clear
    :class:`InputDataError` for files it cannot parse or decode.
    """
    import pandas as pd

    start = 0
    for part in _csv_parts(path, chunk_rows=chunk_rows, encoding=encoding, delimiter=delimiter):
        if _arrow(part):
            frame = part.to_pandas()
            frame.index = pd.RangeIndex(start, start + len(frame))  # numbered on, as pandas'
            part = frame
        yield part
        start += len(part)


def _csv_parts(
    path: Path, *, chunk_rows: int | None, encoding: str, delimiter: str
) -> Iterator[pa.Table | pd.DataFrame]:
    """Arrow's tables while it can parse the file, then pandas' frames from the row it
    stopped at."""
    done = 0
    try:
        for table in _csv_arrow(
            path, chunk_rows=chunk_rows, encoding=encoding, delimiter=delimiter
        ):
            yield table
            done += table.num_rows
        return
    except _ArrowRefused:
        pass  # pandas reads it below, from the row Arrow stopped at
    for frame in _read_csv_pandas(
        path, chunk_rows=chunk_rows, encoding=encoding, delimiter=delimiter
    ):
        if len(frame) and done >= len(frame):  # rows Arrow gave already
            done -= len(frame)
            continue
        yield frame.iloc[done:] if done else frame
        done = 0


def _arrow(part: object) -> bool:
    return not hasattr(part, "iloc")  # a pandas frame has it, an Arrow table not


def _table_of(frame: pd.DataFrame) -> pa.Table:
    """A frame of ``str`` columns as an Arrow table of strings (an empty column too)."""
    import pyarrow as pa

    schema = pa.schema([(str(name), pa.string()) for name in frame.columns])
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


class _ArrowRefused(Exception):
    """Arrow cannot read this CSV as pandas would: read it with pandas."""


def _csv_arrow(
    path: Path, *, chunk_rows: int | None, encoding: str, delimiter: str
) -> Iterator[pa.Table]:
    """Every column as a string (an empty cell is ``""``), in tables of ``chunk_rows`` rows."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if len(delimiter) != 1:
        raise _ArrowRefused
    codec = _codec(encoding)
    # Arrow skips a UTF-8 byte-order mark itself, and transcodes other encodings with Python's
    # codecs.
    read = {"encoding": "utf8" if codec == "utf-8" else encoding}
    parse = pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    try:
        with pcsv.open_csv(
            path, read_options=pcsv.ReadOptions(block_size=1 << 16, **read), parse_options=parse
        ) as head:
            names = head.schema.names
        # pandas names an empty or repeated column name itself ("Unnamed: 0", "a.1").
        if "" in names or len(set(names)) != len(names):
            raise _ArrowRefused
        convert = pcsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        if Path(path).stat().st_size <= _CSV_WHOLE_BYTES:
            table = pcsv.read_csv(
                path,
                read_options=pcsv.ReadOptions(**read),
                parse_options=parse,
                convert_options=convert,
            )
            yield from _chunks(iter(table.to_batches()), names, chunk_rows=chunk_rows)
            return
        with pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=_CSV_BLOCK_BYTES, **read),
            parse_options=parse,
            convert_options=convert,
        ) as reader:
            yield from _chunks(reader, names, chunk_rows=chunk_rows)
    except (pa.ArrowException, OSError, LookupError, UnicodeError):
        raise _ArrowRefused from None


def _chunks(
    batches: Iterator[pa.RecordBatch], names: list[str], *, chunk_rows: int | None
) -> Iterator[pa.Table]:
    """Record batches of strings as tables of exactly ``chunk_rows`` rows (the last may have
    fewer; all in one table when None); a file with no rows still gives one empty table."""
    import pyarrow as pa

    schema = pa.schema([(name, pa.string()) for name in names])
    pending, rows, given = [], 0, 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while chunk_rows and rows >= chunk_rows:
            table = pa.Table.from_batches(pending, schema=schema)
            yield table.slice(0, chunk_rows)
            given += 1
            rest = table.slice(chunk_rows)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows or given == 0:
        yield pa.Table.from_batches(pending, schema=schema)


def _read_csv_pandas(
    path: Path, *, chunk_rows: int | None, encoding: str, delimiter: str
) -> Iterator[pd.DataFrame]:
    """pandas' reader: for what Arrow refuses, with pandas' behaviour and messages."""
    import pandas as pd

    # A UTF-8 file may open with a byte-order mark (Excel writes one): read it either way.
    codec = "utf-8-sig" if _codec(encoding) == "utf-8" else encoding
    text = {"dtype": str, "encoding": codec, "sep": delimiter}
    try:
        reader = pd.read_csv(
            path, keep_default_na=False, na_filter=False, chunksize=chunk_rows, **text
        )
        if chunk_rows is None:
            yield reader
            return
        with reader:
            empty = True
            for frame in reader:
                empty = False
                yield frame
            if empty:  # a header and no rows: still one (empty) chunk, so columns get checked
                yield pd.read_csv(path, nrows=0, **text)
    except FileNotFoundError:
        raise InputDataError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise InputDataError(_undecodable(path, encoding)) from None
    except LookupError:
        raise InputDataError(
            f"{path}: unknown encoding '{encoding}'; set encoding in node.toml [source] to a "
            "Python codec name such as 'utf-8' or 'cp1252'"
        ) from None
    except pd.errors.EmptyDataError:
        raise InputDataError(f"{path}: the file is empty (no header row)") from None
    except pd.errors.ParserError as exc:
        raise InputDataError(f"{path}: malformed CSV: {exc}") from None


def _codec(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return encoding


def _undecodable(path: Path, encoding: str) -> str:
    """Where ``path`` first fails to decode as ``encoding``, and what to do about it."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, line, where = 0, 1, ""
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                line += block.count(b"\n", 0, max(exc.start, 0))
                where = f" at byte {offset + max(exc.start, 0)} (line {line})"
                break
            offset += len(block)
            line += block.count(b"\n")
    other = "utf-8" if _codec(encoding) == "cp1252" else "cp1252"
    return (
        f"{path}: cannot be read as {encoding} text{where}. Set the file's encoding in node.toml "
        f'[source], such as encoding = "{other}" (common for exports from Excel or Windows '
        "systems), or export the file again as UTF-8 CSV"
    )


def _source_formats() -> tuple[str, ...]:
    # Imported here, so that reading a file (for a clkhash schema) loads no project models.
    from oda_fed.config import SOURCE_FORMATS

    return SOURCE_FORMATS


def count_rows(path: Path, options: ReadOptions | None = None) -> int:
    """Data rows in an extract, counted fast (a CSV's line ends, the row count a Parquet file or
    an xlsx sheet records, the database's count of a query's rows), for progress display only."""
    options = options or ReadOptions()
    fmt = options.format_of(path)
    if fmt == "sql":
        from oda_fed.node.sql import count_sql

        return count_sql(options.sql_query())
    if not Path(path).is_file():
        raise InputDataError(f"{path}: file not found; check the path in node.toml [source]")
    if fmt in ("parquet", "xlsx"):
        from oda_fed.node.sources import _parquet_file, _workbook, _worksheet
    if fmt == "parquet":
        with _parquet_file(path) as file:
            return file.metadata.num_rows
    if fmt == "xlsx":
        book = _workbook(path)
        try:
            return max((_worksheet(book, path, options.sheet).max_row or 1) - 1, 0)
        finally:
            book.close()
    lines = 0
    block = bytearray(1 << 22)  # one buffer: a fresh one per read costs its pages each time
    with open(path, "rb") as fh:
        while size := fh.readinto(block):
            lines += block.count(b"\n", 0, size)
    return max(lines - 1, 0)
