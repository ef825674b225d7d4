"""Attributes derived from a partner's event tables: a count, any event, or days since the latest.

An event table (incidents, referrals, inspections) holds many rows per person and never leaves the
node; only one banded value per record of the extract does. Each table is read once, a block of
bytes at a time, for every attribute derived from it, so memory holds one block of events plus a
few numbers per record, whatever the table's length. Events are matched to the extract's records
by record id; events of people outside the extract are left out and counted in the node's log.

Error messages name the file, the column, the row and the setting to change, never a value of the
table: its record ids and dates describe people.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from oda_fed.config import EVENT_DERIVATIONS, NO_EVENT, Attribute, EventTable, band_labels
from oda_fed.errors import InputDataError
from oda_fed.standardise import InvalidValue, standardise_date

log = logging.getLogger(__name__)

#: "keep" keeps what a malformed linkage value still says; an event's date is either read or left
#: out, so for events it acts as "missing".
OnInvalid = Literal["error", "missing", "keep"]

#: Bytes of the table read at a time: about 1.8M short rows, and a few hundred MB of memory.
#: Each block also rebuilds the lookup of the extract's record ids, so much smaller blocks cost
#: time.
CHUNK_BYTES = 64 << 20

# A date followed by a time of day, as exports write timestamps. Without a date_format each is cut
# to its date before parsing, so a table of timestamps has as many distinct values to parse as it
# has days. Only this exact shape is cut: standardise_date drops the same suffix itself, so the
# result is the same as parsing the whole value (see the test).
_TIMESTAMP = r"^(\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4})[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?$"
# Day numbers (proleptic ordinals) of a date that is missing or unreadable; real ones are >= 1.
_UNDATED = 0
_INVALID = -1


@dataclass(frozen=True)
class EventSummary:
    """What one event table gave: its attributes per record, and the events it left out.

    Attributes
    ----------
    table
        The table's name in ``[[source.events]]``.
    values
        Attribute name -> one label per record of the extract, in the extract's order.
    events
        Data rows read.
    unmatched
        Events whose record id is not in the extract (left out: not an error).
    undated
        Events of the extract's records with an empty date (left out).
    invalid
        Events of the extract's records with an unreadable date, left out under
        ``on_invalid = "missing"`` (under ``"error"`` the first one stops the node).
    """

    table: str
    values: dict[str, list[str]]
    events: int
    unmatched: int
    undated: int
    invalid: int


def derive_events(
    table: EventTable,
    *,
    attributes: Sequence[Attribute],
    record_ids: Sequence[str] | np.ndarray,
    on_invalid: OnInvalid = "error",
    chunk_bytes: int = CHUNK_BYTES,
) -> EventSummary:
    """Derive every attribute in ``attributes`` from ``table`` in one pass over its file.

    Parameters
    ----------
    table
        The event table (``[[source.events]]`` in node.toml).
    attributes
        Event attributes (``derive`` = ``event_count``, ``event_any`` or ``event_latest``) that
        name this table.
    record_ids
        The extract's record ids, unique and stripped as the extract reader gives them. Each
        attribute has one label per id, in this order.
    on_invalid
        node.toml ``[source] on_invalid``: ``"error"`` stops at the first unreadable date of an
        extract's record and names its row; ``"missing"`` leaves such events out and counts them.
    chunk_bytes
        Bytes of the file read at a time; the result does not depend on it.

    Returns
    -------
    EventSummary
        The labels, and counts of the events left out (also written to the node's log).

    Raises
    ------
    InputDataError
        The file is missing, unreadable, not UTF-8 or malformed; a column is missing; a date is
        unreadable under ``on_invalid = "error"``; an attribute counts some event types but the
        table names no type column.

    Examples
    --------
    >>> table = EventTable(name="incidents", path=Path("incidents.csv"),
    ...                    record_id="person_ref", date="occurred")  # doctest: +SKIP
    >>> recent = Attribute(name="incidents_12m", partner="police", derive="event_count",
    ...                    events="incidents", at=dt.date(2026, 4, 1), window_days=365,
    ...                    bands=[0, 1, 3])  # doctest: +SKIP
    >>> derive_events(table, attributes=[recent],
    ...               record_ids=["P1", "P2"]).values  # doctest: +SKIP
    {'incidents_12m': ['3+', '0']}
    """
    for attribute in attributes:
        if attribute.derive not in EVENT_DERIVATIONS or attribute.events != table.name:
            raise ValueError(f"attribute '{attribute.name}' is not derived from '{table.name}'")
        if attribute.event_types and table.type is None:
            raise InputDataError(
                f"attribute '{attribute.name}' counts only some event types (event_types in the "
                f"project), but event table '{table.name}' names no type column: set type = "
                '"<column>" in its [[source.events]] in node.toml'
            )
    n = len(record_ids)
    tallies = [_Tally(a, records=n) for a in attributes]
    extract = pa.array(np.asarray(record_ids, dtype=object), type=pa.string())
    dates = _Dates(table.date_format)
    events = unmatched = undated = invalid = 0
    for first_row, batch in _read(table, chunk_bytes=chunk_bytes):
        events += batch.num_rows
        ids = pc.utf8_trim_whitespace(batch.column(table.record_id))
        rows = pc.fill_null(pc.index_in(ids, value_set=extract), -1).to_numpy()
        # Only the extract's events are looked at further: the others are no business of this
        # round, and an unreadable date among them should not stop it.
        kept = np.flatnonzero(rows >= 0)
        unmatched += batch.num_rows - len(kept)
        rows = rows[kept]
        dated = batch.column(table.date).take(kept)
        days = dates.days(dated)
        bad = days == _INVALID
        if bad.any() and on_invalid == "error":
            first = int(np.flatnonzero(bad)[0])
            problem = dates.problem(dated[first].as_py())
            raise InputDataError(
                f"{table.path}: row {first_row + int(kept[first]) + 2}, column '{table.date}' "
                f"(event table '{table.name}'): date {problem}. {int(bad.sum())} date(s) "
                "of the extract's records in this chunk are unreadable. Fix them, give the "
                'table\'s date_format in [[source.events]], or set on_invalid = "missing" in '
                "node.toml [source] to leave such events out."
            )
        invalid += int(bad.sum())
        undated += int((days == _UNDATED).sum())
        # Types as codes into their distinct values, shared by the attributes that pick some.
        types = (
            None if table.type is None else batch.column(table.type).take(kept).dictionary_encode()
        )
        for tally in tallies:
            tally.add(rows, days, types)
    log.info(
        "event table '%s' (%s): %d events read; left out: %d of people not in the extract, "
        "%d without a date, %d with an unreadable date",
        table.name,
        table.path,
        events,
        unmatched,
        undated,
        invalid,
    )
    return EventSummary(
        table=table.name,
        values={t.attribute.name: t.labels() for t in tallies},
        events=events,
        unmatched=unmatched,
        undated=undated,
        invalid=invalid,
    )


class EventTables:
    """A node's event tables matched to its extract: each table is read once, for all the
    attributes derived from it, the first time one of them is asked for.

    Parameters
    ----------
    tables
        node.toml ``[[source.events]]``.
    record_ids
        The extract's record ids (see :func:`derive_events`).
    attributes
        Every attribute the node will derive; the event attributes among them are derived
        together, table by table.
    on_invalid
        node.toml ``[source] on_invalid``.
    chunk_bytes
        Bytes of a table read at a time.

    Examples
    --------
    >>> events = EventTables(source.events, record_ids=extract.record_ids,
    ...                      attributes=asked)  # doctest: +SKIP
    >>> events.values(recent)  # doctest: +SKIP
    ['3+', '0', ...]
    """

    def __init__(
        self,
        tables: Sequence[EventTable],
        *,
        record_ids: Sequence[str] | np.ndarray,
        attributes: Sequence[Attribute],
        on_invalid: OnInvalid = "error",
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._tables: dict[str, EventTable] = {}
        for table in tables:
            if table.name in self._tables:
                raise InputDataError(
                    f"node.toml names event table '{table.name}' twice in [[source.events]]"
                )
            self._tables[table.name] = table
        self._record_ids = record_ids
        self._attributes = [a for a in attributes if a.derive in EVENT_DERIVATIONS]
        self._on_invalid: OnInvalid = on_invalid
        self._chunk_bytes = chunk_bytes
        self._done: dict[str, EventSummary] = {}

    def values(self, attribute: Attribute) -> list[str]:
        """``attribute``'s label for each record of the extract, in the extract's order.

        Raises
        ------
        InputDataError
            node.toml gives no table of the attribute's name, or as :func:`derive_events`.
        """
        table = self._tables.get(attribute.events or "")
        if table is None:
            raise missing_table(attribute)
        summary = self._done.get(table.name)
        if summary is None or attribute.name not in summary.values:
            together = [a for a in self._attributes if a.events == table.name]
            if attribute not in together:
                together.append(attribute)
            summary = derive_events(
                table,
                attributes=together,
                record_ids=self._record_ids,
                on_invalid=self._on_invalid,
                chunk_bytes=self._chunk_bytes,
            )
            self._done[table.name] = summary
        return summary.values[attribute.name]


def missing_table(attribute: Attribute) -> InputDataError:
    """The error for an event attribute whose table node.toml does not give."""
    name = attribute.events
    return InputDataError(
        f"the project derives attribute '{attribute.name}' from event table '{name}', but "
        f'node.toml gives no such table: add [[source.events]] with name = "{name}", path, '
        "record_id and date (the columns of the person's record id and of the event's date)"
    )


class _Tally:
    """One attribute's running count (or latest day) per record, added to block by block."""

    def __init__(self, attribute: Attribute, *, records: int) -> None:
        assert attribute.at is not None  # the model requires it for event derivations
        self.attribute = attribute
        self.at = attribute.at.toordinal()
        # The window (at - window_days, at]; undated (0) and unreadable (-1) events fall below it.
        self.after = self.at - attribute.window_days if attribute.window_days else _UNDATED
        self.types = {t.strip() for t in attribute.event_types}
        self.count = np.zeros(records, dtype=np.int64)
        self.latest = np.zeros(records, dtype=np.int64)  # 0: no event

    def add(self, rows: np.ndarray, days: np.ndarray, types: pa.DictionaryArray | None) -> None:
        keep = (days > self.after) & (days <= self.at)
        if self.types and types is not None:
            keep &= _is_one_of(types, self.types)
        if self.attribute.derive == "event_latest":
            np.maximum.at(self.latest, rows[keep], days[keep])
        else:
            self.count += np.bincount(rows[keep], minlength=len(self.count))

    def labels(self) -> list[str]:
        if self.attribute.derive == "event_any":
            return np.where(self.count > 0, "yes", "no").tolist()
        bands = self.attribute.bands
        assert bands is not None  # the model requires them for event_count and event_latest
        names = np.array(band_labels(bands), dtype=object)
        if self.attribute.derive == "event_count":
            return names[np.searchsorted(bands, self.count, side="right") - 1].tolist()
        since = self.at - self.latest
        out = names[np.searchsorted(bands, since, side="right") - 1]
        out[self.latest == 0] = NO_EVENT
        return out.tolist()


def _is_one_of(types: pa.DictionaryArray, wanted: set[str]) -> np.ndarray:
    """Whether each event's type is one of ``wanted`` (surrounding spaces ignored)."""
    # One test per distinct type, then spread to the events.
    hit = np.array([t.strip() in wanted for t in types.dictionary.to_pylist()], dtype=bool)
    return hit[types.indices.to_numpy()]


class _Dates:
    """Day numbers of an event table's dates, each distinct value parsed once per file.

    A table of 10M events spans a few thousand days, so parsing distinct values costs little; the
    memo is dropped when it grows past ``MAX_MEMO`` so memory stays bounded.
    """

    MAX_MEMO = 1_000_000

    def __init__(self, fmt: str | None) -> None:
        self.fmt = fmt
        self._days: dict[str, int] = {}

    def days(self, column: pa.Array) -> np.ndarray:
        """Day number of each value: 0 where it is empty, -1 where it cannot be read."""
        encoded = column.dictionary_encode()
        index = encoded.indices.to_numpy()
        distinct = encoded.dictionary
        if self.fmt is None:
            cut = pc.replace_substring_regex(distinct, pattern=_TIMESTAMP, replacement=r"\1")
            again = cut.dictionary_encode()
            index = again.indices.to_numpy()[index]
            distinct = again.dictionary
        if len(self._days) > self.MAX_MEMO:
            self._days.clear()
        days = np.array([self._day(t) for t in distinct.to_pylist()], dtype=np.int64)
        return days[index]

    def problem(self, text: str) -> str:
        """What is wrong with an unreadable date, without quoting it."""
        try:
            standardise_date(text, fmt=self.fmt)
        except InvalidValue as exc:
            return exc.problem
        return "cannot be read"

    def _day(self, text: str) -> int:
        day = self._days.get(text)
        if day is None:
            try:
                iso = standardise_date(text, fmt=self.fmt)
            except InvalidValue:
                day = _INVALID
            else:
                day = _UNDATED if iso is None else dt.date.fromisoformat(iso).toordinal()
            self._days[text] = day
        return day


def _read(table: EventTable, *, chunk_bytes: int) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The table's record id, date and type columns as text, a block at a time, each with the
    number of data rows before it."""
    path = table.path
    wanted = {"record_id": table.record_id, "date": table.date}
    if table.type is not None:
        wanted["type"] = table.type
    header = _header(table)
    for key, column in wanted.items():
        if column not in header:
            found = ", ".join(header[:20])
            raise InputDataError(
                f"{path}: event table '{table.name}' has no column '{column}' (its {key} in "
                f"[[source.events]]). Columns found: {found}. Fix {key} in node.toml or the "
                "file's header."
            )
    columns = list(dict.fromkeys(wanted.values()))
    options = pcsv.ConvertOptions(
        include_columns=columns,
        column_types=dict.fromkeys(columns, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    done = 0
    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=chunk_bytes),
            # Free-text columns may hold line breaks inside quotes: rows are found by parsing.
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=options,
        )
        for batch in reader:
            yield done, batch
            done += batch.num_rows
    except pa.ArrowInvalid as exc:
        # Arrow's own message may quote the row: it is not repeated.
        if "UTF8" in str(exc):
            raise InputDataError(
                f"{path}: event table '{table.name}' is not UTF-8 text (after row {done + 1}); "
                "export it as UTF-8 CSV"
            ) from None
        raise InputDataError(
            f"{path}: event table '{table.name}' is malformed CSV after row {done + 1}: a row "
            "has more or fewer fields than the header, a quote is not closed, or a row is "
            f"longer than the {chunk_bytes} bytes read at a time"
        ) from None
    except OSError as exc:
        raise InputDataError(
            f"{path}: event table '{table.name}' cannot be read ({exc.strerror or exc})"
        ) from None


def _header(table: EventTable) -> list[str]:
    path = table.path
    try:
        with open(path, "rb") as fh:
            # Line by line, so that only the header is decoded here: a bad byte further down is
            # found, with its row, when its block is read.
            lines = (line.decode("utf-8-sig" if i == 0 else "utf-8") for i, line in enumerate(fh))
            header = next(csv.reader(lines), None)
    except FileNotFoundError:
        raise InputDataError(
            f"{path}: event table '{table.name}' not found; check its path in [[source.events]]"
        ) from None
    except UnicodeDecodeError:
        raise InputDataError(
            f"{path}: event table '{table.name}' is not UTF-8 text; export it as UTF-8 CSV"
        ) from None
    except OSError as exc:
        raise InputDataError(
            f"{path}: event table '{table.name}' cannot be read ({exc.strerror or exc})"
        ) from None
    except csv.Error as exc:  # says what is wrong with the line, without quoting it
        raise InputDataError(f"{path}: event table '{table.name}' header: {exc}") from None
    if not header:
        raise InputDataError(f"{path}: event table '{table.name}' is empty (no header row)")
    return header
