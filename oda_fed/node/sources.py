"""Read a partner's data, map its columns to the project's fields and standardise the values.

Everything here runs on the partner's premises. Error messages may name rows and columns, since they
are shown to the partner's own staff, but they never travel to the coordinator.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from oda_fed.errors import InputDataError

# Re-exported: reading moved to oda_fed.node.reading, and these are used from here.
from oda_fed.node.reading import ReadOptions as ReadOptions
from oda_fed.node.reading import _source_formats, read_csv
from oda_fed.node.reading import count_rows as count_rows
from oda_fed.standardise import STANDARDISERS, InvalidValue, standardise_column, standardise_date

if TYPE_CHECKING:
    from oda_fed.config import NodeSource, Project


class EmptyExtractError(InputDataError):
    """The extract has a header and no records: a node has nothing to encode.

    Its :attr:`reason` names nothing of the data, so the node may tell the coordinator (and,
    through it, the operator) why it could not take part in the round.
    """

    reason = "the extract has a header but no records"

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path}: {self.reason}. Export the partner's records again (check the extract's "
            "query or filter), then ask the operator to start a new round"
        )


def require_records(path: Path, count: int) -> None:
    """Raise :class:`EmptyExtractError` when ``path`` held no records."""
    if count == 0:
        raise EmptyExtractError(path)


#: Delimiters an export commonly uses, for the hint when a header reads as one column.
COMMON_DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class Layout:
    """Where each project field and shareable attribute sits in one partner's file, and how to
    read that file."""

    record_id: str
    columns: Mapping[str, str]  # field -> column; "" where this partner does not hold the field
    attributes: Mapping[str, str]
    date_format: str | None
    on_invalid: str = "error"
    read: ReadOptions = field(default_factory=ReadOptions)


@dataclass(frozen=True)
class PreparedSource:
    """A partner's records, standardised and ready to encode; nothing here leaves the node."""

    path: Path
    record_ids: np.ndarray  # object array of str
    fields: dict[str, list[str | None]]
    attributes: dict[str, list[str]]
    missing: dict[str, int]
    invalid: dict[str, int]

    def __len__(self) -> int:
        return len(self.record_ids)


def extract_path(source: NodeSource) -> Path:
    """What names a node's extract in messages: its file, or a SQL source's user@host/database."""
    if source.path is not None:
        return source.path
    return ReadOptions.of(source).sql_query().label()


def layout_for(project: Project, partner: str | None, source: NodeSource | None = None) -> Layout:
    """Resolve the column layout: the node's own settings, else the project's, else field names."""
    agreed = None
    if partner is not None and partner in project.partner_ids:
        agreed = project.partner(partner).source
    fields = [f.name for f in project.linkage.fields]
    columns = {f: f for f in fields}
    attributes: dict[str, str] = {}
    record_id = "record_id"
    date_format = None
    if agreed is not None:
        columns.update(agreed.columns)
        attributes.update(agreed.attributes)
        record_id = agreed.record_id
        date_format = agreed.date_format
    on_invalid = "error"
    if source is not None:
        columns.update(source.columns)
        attributes.update(source.attributes)
        record_id = source.record_id or record_id
        date_format = source.date_format or date_format
        on_invalid = source.on_invalid
    return Layout(
        record_id=record_id,
        columns={f: columns[f] for f in fields},
        attributes=attributes,
        date_format=date_format,
        on_invalid=on_invalid,
        read=ReadOptions.of(source),
    )


def read_source(
    path: Path, *, chunk_rows: int | None = None, options: ReadOptions | None = None
) -> Iterator[pd.DataFrame]:
    """Read an extract (CSV, Parquet, xlsx, or a SQL query's rows) as text columns,
    ``chunk_rows`` rows at a time (all at once when None). A SQL source's ``path`` only names it
    in messages.

    Every value is a ``str``: an empty cell is ``""``, a whole number has no ``.0`` and a date
    is ``YYYY-MM-DD``, so each format prepares as the same table written as CSV would. A file
    with a header and no rows still gives one (empty) frame, so its columns get checked.

    Raises
    ------
    InputDataError
        The file is missing, unreadable in its format or encoding, or has no header; the
        message says what to do.

    Examples
    --------
    >>> options = ReadOptions(encoding="cp1252", delimiter=";")
    >>> frames = read_source(Path("council.csv"), chunk_rows=50_000,
    ...                      options=options)  # doctest: +SKIP
    """
    options = options or ReadOptions()
    fmt = options.format_of(path)
    if fmt == "sql":
        from oda_fed.node.sql import read_sql

        yield from read_sql(options.sql_query(), chunk_rows=chunk_rows)
        return
    if not Path(path).is_file():
        raise InputDataError(f"{path}: file not found; check the path in node.toml [source]")
    if fmt == "parquet":
        yield from _read_parquet(path, chunk_rows=chunk_rows)
    elif fmt == "xlsx":
        yield from _read_xlsx(path, chunk_rows=chunk_rows, sheet=options.sheet)
    else:
        yield from read_csv(
            path, chunk_rows=chunk_rows, encoding=options.encoding, delimiter=options.delimiter
        )


def _read_parquet(path: Path, *, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    import pyarrow as pa

    with _parquet_file(path) as file:
        try:
            empty = True
            batches = file.iter_batches(batch_size=chunk_rows or max(file.metadata.num_rows, 1))
            for batch in batches:
                empty = False
                yield _text_batch(batch)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(path, exc, "a readable Parquet file") from None
        if empty:
            yield pd.DataFrame({name: [] for name in file.schema_arrow.names}, dtype=object)


def _parquet_file(path: Path) -> object:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc, "a readable Parquet file") from None


def _unreadable(path: Path, exc: Exception, what: str) -> InputDataError:
    return InputDataError(
        f"{path}: not {what} ({exc}). Export or save it again, or set format in node.toml "
        f"[source] to the file's real format ({', '.join(_source_formats())})"
    )


def _text_batch(batch: object) -> pd.DataFrame:
    """A Parquet record batch as a frame of ``str`` columns, nulls as ``""``."""
    return pd.DataFrame(
        {
            name: _text_column(column).to_numpy(zero_copy_only=False)
            for name, column in zip(batch.schema.names, batch.columns, strict=True)
        },
        dtype=object,
    )


def _text_column(column: object) -> object:
    """One Arrow column as strings: whole floats without ``.0``, dates ``YYYY-MM-DD``, and
    timestamps as their date at midnight, else ``YYYY-MM-DDTHH:MM:SS``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        return _text_column(column.cast(kind.value_type))
    if pa.types.is_floating(kind):
        finite = pc.and_kleene(pc.is_finite(column), pc.less(pc.abs(column), 2.0**53))
        whole = pc.and_kleene(finite, pc.equal(column, pc.floor(column)))
        as_int = pc.cast(pc.if_else(whole, column, 0.0), pa.int64(), safe=False)
        text = pc.if_else(whole, pc.cast(as_int, pa.string()), pc.cast(column, pa.string()))
        text = pc.if_else(pc.is_nan(column), "", text)  # NaN is pandas' missing value
    elif pa.types.is_timestamp(kind):
        day = pc.cast(column, pa.date32())
        midnight = pc.equal(pc.cast(day, kind), column)
        seconds = pc.cast(column, pa.timestamp("s", tz=kind.tz), safe=False)
        text = pc.if_else(
            midnight,
            pc.cast(day, pa.string()),
            pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%S"),
        )
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        text = pa.array(
            [None if v is None else v.decode("utf-8", "replace") for v in column.to_pylist()],
            pa.string(),
        )
    else:
        text = pc.cast(column, pa.string())  # ints, dates, booleans, decimals, strings
    return pc.fill_null(text, "")


def _read_xlsx(path: Path, *, chunk_rows: int | None, sheet: str | None) -> Iterator[pd.DataFrame]:
    book = _workbook(path)
    try:
        worksheet = _worksheet(book, path, sheet)
        rows = worksheet.iter_rows(values_only=True)
        header = next(rows, None)
        named = [i for i, v in enumerate(header or ()) if v is not None]
        if not named:
            raise InputDataError(
                f"{path}: sheet '{worksheet.title}' is empty (no header row); put the column "
                "names in its first row, or set sheet in node.toml [source]"
            )
        width = named[-1] + 1
        columns = [_cell_text(v) for v in header[:width]]
        batch: list[list[str]] = []
        empty = True
        for row in rows:
            cells = [_cell_text(v) for v in row[:width]]
            if not any(cells):  # a blank row, as the CSV reader skips blank lines
                continue
            batch.append(cells + [""] * (width - len(cells)))
            if chunk_rows is not None and len(batch) >= chunk_rows:
                empty = False
                yield pd.DataFrame(batch, columns=columns, dtype=object)
                batch = []
        if batch or empty:
            yield pd.DataFrame(batch, columns=columns, dtype=object)
    finally:
        book.close()


def _workbook(path: Path) -> object:
    import zipfile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        return load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as exc:
        raise _unreadable(path, exc, "a readable .xlsx workbook") from None


def _worksheet(book: object, path: Path, sheet: str | None) -> object:
    """The sheet named ``sheet`` (the first when None), or an error naming those there are."""
    if sheet is None:
        return book.worksheets[0]
    if sheet not in book.sheetnames:
        raise InputDataError(
            f"{path}: no sheet '{sheet}'; the workbook has {', '.join(book.sheetnames)}. Set "
            "sheet in node.toml [source] to one of them (or leave it out for the first)"
        )
    return book[sheet]


def _cell_text(value: object) -> str:
    """A cell as text: a whole number without ``.0``, a date as ``YYYY-MM-DD``, empty as ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _require(frame: pd.DataFrame, path: Path, column: str, what: str, read: ReadOptions) -> None:
    if column not in frame.columns:
        found = ", ".join(frame.columns[:20])
        raise InputDataError(
            f"{path}: no column '{column}' ({what}). Columns found: {found}. "
            f"{_delimiter_hint(frame, path, read)}Fix the mapping in node.toml [source] or the "
            "project's [partners.source], or the file's header."
        )


def _delimiter_hint(frame: pd.DataFrame, path: Path, read: ReadOptions) -> str:
    """A CSV read with the wrong delimiter has its header in one column: say which it holds."""
    if read.format_of(path) != "csv" or len(frame.columns) != 1:
        return ""
    header = str(frame.columns[0])
    for delimiter in COMMON_DELIMITERS:
        if delimiter != read.delimiter and delimiter in header:
            shown = "\\t" if delimiter == "\t" else delimiter
            return (
                f"The header looks '{shown}'-separated: set delimiter = '{shown}' in node.toml "
                "[source]. "
            )
    return ""


def require_columns(frame: pd.DataFrame, path: Path, layout: Layout) -> None:
    """Raise :class:`InputDataError` unless ``frame`` has every column ``layout`` maps."""
    read = layout.read
    _require(frame, path, layout.record_id, "the record id", read)
    for name, column in layout.columns.items():
        if column:  # "" means this partner does not hold the field
            _require(frame, path, column, f"mapped from field '{name}'", read)
    for attribute, column in layout.attributes.items():
        _require(frame, path, column, f"mapped from attribute '{attribute}'", read)


def iter_prepared(
    path: Path, *, project: Project, layout: Layout, chunk_rows: int = 100_000
) -> Iterator[PreparedSource]:
    """Read ``path`` in chunks and standardise every linkage field of each chunk.

    Only one chunk of raw values is in memory at a time. Counts of missing and invalid values are
    per chunk; record ids are checked for blanks and repeats across the whole file.

    Raises
    ------
    InputDataError
        A mapped column is missing, record ids are empty or repeated, or (with
        ``on_invalid = "error"``) a value is malformed. The message names the row and column.
    """
    ids: list[np.ndarray] = []
    memo = _Memo()
    first_row = 0
    for frame in read_source(path, chunk_rows=chunk_rows, options=layout.read):
        if first_row == 0:
            require_columns(frame, path, layout)
        chunk = _prepare_frame(
            frame, path=Path(path), project=project, layout=layout, first_row=first_row, memo=memo
        )
        ids.append(chunk.record_ids)
        yield chunk
        first_row += len(frame)
    # One pass over all ids at the end: checking each chunk against everything before it would
    # cost time growing with the square of the file. Nothing has been written before this point.
    every = pd.Series(np.concatenate(ids) if ids else np.empty(0, dtype=object))
    dupes = every[every.duplicated()]
    if len(dupes):
        raise InputDataError(
            f"{path}: {len(dupes)} repeated record id(s) in '{layout.record_id}' "
            f"(first: '{dupes.iloc[0]}', row {int(dupes.index[0]) + 2}); each record needs its own id"
        )


class _Memo:
    """Standardised values carried across chunks, for columns whose values repeat.

    Dates of birth, names and postcodes repeat from chunk to chunk, so each distinct raw value is
    standardised once per file. Columns of mostly unique values (addresses) are not memoised, so
    memory stays bounded by a chunk.
    """

    MAX_DISTINCT_SHARE = 0.5

    def __init__(self) -> None:
        self._cache: dict[str, dict[str, tuple[object, bool]] | None] = {}

    def standardise(
        self, field: str, values: pd.Series, field_type: str, fmt: str | None, *, keep: bool
    ) -> tuple[pd.Series, pd.Series]:
        cache = self._cache.get(field, {})
        if cache is None:
            return standardise_column(values, field_type, fmt=fmt, keep=keep)
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        distinct = uniques.tolist()  # iterating an Arrow-backed index boxes each value: slower
        todo = [u for u in distinct if u not in cache]
        if todo:
            std, bad = standardise_column(
                pd.Series(todo, dtype=object), field_type, fmt=fmt, keep=keep
            )
            cache.update(zip(todo, zip(std.tolist(), bad.tolist(), strict=True), strict=True))
        if field not in self._cache:
            # Decide once, on the first chunk, whether this column repeats enough to memoise.
            keep = len(uniques) <= self.MAX_DISTINCT_SHARE * max(len(values), 1)
            self._cache[field] = cache if keep else None
        looked = [cache[u] for u in distinct]
        std_u = np.array([s for s, _ in looked] + [None], dtype=object)
        bad_u = np.array([b for _, b in looked] + [False], dtype=bool)
        return (
            pd.Series(std_u[codes], index=values.index, dtype=object),
            pd.Series(bad_u[codes], index=values.index, dtype=bool),
        )


def prepare(path: Path, *, project: Project, layout: Layout) -> PreparedSource:
    """Read and standardise a whole file at once (for small files; see :func:`iter_prepared`)."""
    chunks = list(iter_prepared(path, project=project, layout=layout, chunk_rows=1_000_000))
    if len(chunks) == 1:
        return chunks[0]
    return PreparedSource(
        path=Path(path),
        record_ids=np.concatenate([c.record_ids for c in chunks]),
        fields={f: [v for c in chunks for v in c.fields[f]] for f in chunks[0].fields},
        attributes={a: [v for c in chunks for v in c.attributes[a]] for a in chunks[0].attributes},
        missing={f: sum(c.missing[f] for c in chunks) for f in chunks[0].missing},
        invalid={f: sum(c.invalid[f] for c in chunks) for f in chunks[0].invalid},
    )


def _prepare_frame(
    frame: pd.DataFrame,
    *,
    path: Path,
    project: Project,
    layout: Layout,
    first_row: int,
    memo: _Memo,
) -> PreparedSource:
    # CSV line of data row i: the header is line 1 and rows count from first_row.
    def line(i: int) -> int:
        return first_row + i + 2

    ids = frame[layout.record_id].str.strip()
    if (ids == "").any():
        row = line(int(np.flatnonzero((ids == "").to_numpy())[0]))
        raise InputDataError(f"{path}: row {row} has an empty record id in '{layout.record_id}'")

    fields: dict[str, list[str | None]] = {}
    missing: dict[str, int] = {}
    invalid: dict[str, int] = {}
    for spec in project.linkage.fields:
        column = layout.columns[spec.name]
        if not column:  # not held by this partner: every value is missing
            fields[spec.name] = [None] * len(frame)
            missing[spec.name] = len(frame)
            invalid[spec.name] = 0
            continue
        fmt = layout.date_format if is_date(spec.type) else None
        values, bad = memo.standardise(
            spec.name, frame[column], spec.type, fmt, keep=layout.on_invalid == "keep"
        )
        n_bad = int(bad.sum())
        if n_bad and layout.on_invalid == "error":
            index = int(np.flatnonzero(bad.to_numpy())[0])
            value = frame[column].iloc[index]
            raise InputDataError(
                f"{path}: row {line(index)}, column '{column}' (field '{spec.name}'): "
                f"{_reason(spec.type, value, fmt)}. {n_bad} value(s) in this column of this chunk "
                f"are invalid. {_typed_date_hint(path, layout, value, fmt)}Fix them, or set "
                'on_invalid in node.toml [source] to "keep" (encode what they still say) or '
                '"missing" (drop them).'
            )
        invalid[spec.name] = n_bad
        absent = values.isna().to_numpy()
        # Invalid cells are None too, but count as invalid, not missing.
        missing[spec.name] = int((absent & ~bad.to_numpy()).sum())
        fields[spec.name] = values.where(~absent, None).tolist()
    attributes = {a: frame[c].str.strip().tolist() for a, c in layout.attributes.items()}
    return PreparedSource(
        path=path,
        record_ids=ids.to_numpy(dtype=object),
        fields=fields,
        attributes=attributes,
        missing=missing,
        invalid=invalid,
    )


def is_date(field_type: str) -> bool:
    return field_type in ("date", "date_of_birth")


def _typed_date_hint(path: Path, layout: Layout, value: str, fmt: str | None) -> str:
    """Parquet and xlsx dates read as ``YYYY-MM-DD``, whatever date_format the CSV had."""
    typed = layout.read.format_of(path) != "csv"
    if typed and fmt is not None and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        return (
            f"Dates in a {layout.read.format_of(path)} file are read as YYYY-MM-DD, not "
            f"'{fmt}': set date_format = \"%Y-%m-%d\" in node.toml [source]. "
        )
    return ""


def _reason(field_type: str, value: str, fmt: str | None) -> str:
    try:
        if is_date(field_type):
            standardise_date(value, fmt=fmt)
        else:
            STANDARDISERS[field_type](value)
    except InvalidValue as exc:
        return str(exc)
    return "invalid value"
