"""Read a partner's data, map its columns to the project's fields and standardise the values.

Everything here runs on the partner's premises. Error messages may name rows and columns, since they
are shown to the partner's own staff, but they never travel to the coordinator.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.config import NodeSource, Project
from oda_fed.errors import InputDataError
from oda_fed.standardise import STANDARDISERS, InvalidValue, standardise_column, standardise_date


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


@dataclass(frozen=True)
class Layout:
    """Where each project field and shareable attribute sits in one partner's file."""

    record_id: str
    columns: Mapping[str, str]  # field -> column; "" where this partner does not hold the field
    attributes: Mapping[str, str]
    date_format: str | None
    on_invalid: str = "error"


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
    )


def read_csv(path: Path, *, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """Read a CSV as text columns, ``chunk_rows`` at a time (all at once when None).

    Raises a clear :class:`InputDataError` for files pandas cannot parse.
    """
    try:
        reader = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            chunksize=chunk_rows,
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
                yield pd.read_csv(path, dtype=str, nrows=0, encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputDataError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise InputDataError(f"{path}: not UTF-8 text; export the file as UTF-8 CSV") from None
    except pd.errors.EmptyDataError:
        raise InputDataError(f"{path}: the file is empty (no header row)") from None
    except pd.errors.ParserError as exc:
        raise InputDataError(f"{path}: malformed CSV: {exc}") from None


def count_rows(path: Path) -> int:
    """Data rows in a CSV, counted fast from line ends (for progress display only)."""
    lines = 0
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 22):
                lines += block.count(b"\n")
    except FileNotFoundError:
        raise InputDataError(f"{path}: file not found") from None
    return max(lines - 1, 0)


def _require(frame: pd.DataFrame, path: Path, column: str, what: str) -> None:
    if column not in frame.columns:
        found = ", ".join(frame.columns[:20])
        raise InputDataError(
            f"{path}: no column '{column}' ({what}). Columns found: {found}. Fix the mapping in "
            "node.toml [source] or the project's [partners.source], or the file's header."
        )


def require_columns(frame: pd.DataFrame, path: Path, layout: Layout) -> None:
    """Raise :class:`InputDataError` unless ``frame`` has every column ``layout`` maps."""
    _require(frame, path, layout.record_id, "the record id")
    for field, column in layout.columns.items():
        if column:  # "" means this partner does not hold the field
            _require(frame, path, column, f"mapped from field '{field}'")
    for attribute, column in layout.attributes.items():
        _require(frame, path, column, f"mapped from attribute '{attribute}'")


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
    for frame in read_csv(path, chunk_rows=chunk_rows):
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
            raise InputDataError(
                f"{path}: row {line(index)}, column '{column}' (field '{spec.name}'): "
                f"{_reason(spec.type, frame[column].iloc[index], fmt)}. {n_bad} value(s) in this "
                "column of this chunk are invalid. Fix them, or set on_invalid in node.toml "
                '[source] to "keep" (encode what they still say) or "missing" (drop them).'
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


def _reason(field_type: str, value: str, fmt: str | None) -> str:
    try:
        if is_date(field_type):
            standardise_date(value, fmt=fmt)
        else:
            STANDARDISERS[field_type](value)
    except InvalidValue as exc:
        return str(exc)
    return "invalid value"
