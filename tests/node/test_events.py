"""Attributes derived from event tables at the node, against a plain-Python reference.

Event tables are real CSV files made from a seeded generator: dates in several forms (with times,
blank, malformed, after the reference date), types with stray spaces, record ids of people outside
the extract, quoted notes with commas and line breaks. Every derivation must equal the reference
whatever the number of bytes read at a time.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from oda_fed.config import NO_EVENT, Attribute, EventTable, band_labels
from oda_fed.errors import InputDataError
from oda_fed.node.derive import derive
from oda_fed.node.events import CHUNK_BYTES, EventTables, derive_events
from oda_fed.standardise import InvalidValue, standardise_date

AT = dt.date(2024, 4, 1)
HEADER = ["event_ref", "person", "occurred", "kind", "notes"]
KINDS = ["asb", "burglary", "fire", "welfare"]
# Unreadable as dates (standardise_date says why): an event with one is left out or stops the node.
MALFORMED = [
    "pending",
    "31/02/2024",
    "01/02/24",
    "2099-01-01",
    "1800-01-01",
    "2024-03-01 12:30 13:45",
]
CHUNKS = (128, 300, 4096, CHUNK_BYTES)


@dataclass(frozen=True)
class Events:
    """An event table as written to disk, and the extract it is matched to."""

    path: Path
    rows: list[tuple[str, str, str]]  # (record id, date, type) as in the file
    record_ids: list[str]

    def table(self, **fields) -> EventTable:
        return EventTable.model_validate(
            {
                "name": "incidents",
                "path": self.path,
                "record_id": "person",
                "date": "occurred",
                "type": "kind",
                **fields,
            }
        )


def write_table(path: Path, rows: list[tuple[str, str, str]], rng: np.random.Generator) -> None:
    # As spreadsheets on Windows export, half the time: a byte-order mark and CRLF line ends.
    windows = bool(rng.random() < 0.5)
    with open(path, "w", newline="", encoding="utf-8-sig" if windows else "utf-8") as fh:
        out = csv.writer(fh, lineterminator="\r\n" if windows else "\n")
        out.writerow(HEADER)
        for i, (person, when, kind) in enumerate(rows):
            notes = rng.choice(["", "seen, then left", 'said "no"', "two\nlines"])
            out.writerow([f"E{i}", person, when, kind, notes])


def date_text(day: dt.date, rng: np.random.Generator) -> str:
    forms = [
        day.isoformat(),
        day.strftime("%d/%m/%Y"),
        f"{day.isoformat()} {rng.integers(24):02d}:{rng.integers(60):02d}:00",
        f"{day.strftime('%d/%m/%Y')} {rng.integers(24):02d}:{rng.integers(60):02d}",
        f"{day.isoformat()}T08:15",
        f" {day.isoformat()} ",
    ]
    return forms[rng.integers(len(forms))]


def random_events(
    folder: Path, rng: np.random.Generator, *, people: int, events: int, malformed: float = 0.0
) -> Events:
    """A random extract and event table: some people have many events, some none, and some
    events belong to people outside the extract."""
    ids = [f"R{i:05d}" for i in rng.choice(10 * people, size=people, replace=False)]
    outsiders = [f"X{i:04d}" for i in range(max(people // 3, 1))]
    rows = []
    for _ in range(events):
        # A third of the extract has no event at all.
        person = ids[rng.integers(max(2 * people // 3, 1))]
        if rng.random() < 0.3:
            person = outsiders[rng.integers(len(outsiders))]
        if rng.random() < 0.05:
            person = f" {person} "
        roll = rng.random()
        if roll < malformed:
            when = MALFORMED[rng.integers(len(MALFORMED))]
        elif roll < malformed + 0.03:
            when = ""
        else:
            when = date_text(AT + dt.timedelta(days=int(rng.integers(-800, 60))), rng)
        kind = KINDS[rng.integers(len(KINDS))]
        rows.append((person, when, f" {kind}" if rng.random() < 0.1 else kind))
    path = folder / f"events-{rng.integers(1 << 30)}.csv"
    write_table(path, rows, rng)
    return Events(path=path, rows=rows, record_ids=ids)


def random_attribute(rng: np.random.Generator, name: str) -> Attribute:
    derive = ["event_count", "event_any", "event_latest"][rng.integers(3)]
    fields: dict = {"name": name, "partner": "police", "derive": derive, "events": "incidents"}
    fields["at"] = AT
    if rng.random() < 0.6:
        fields["window_days"] = int(rng.choice([1, 7, 30, 90, 365]))
    if rng.random() < 0.5:
        fields["event_types"] = sorted(rng.choice(KINDS, size=rng.integers(1, 3), replace=False))
    if derive != "event_any":
        top = 5 if derive == "event_count" else 400
        fields["bands"] = [0, *sorted(int(b) for b in rng.choice(np.arange(1, top), 2, False))]
    return Attribute.model_validate(fields)


def reference(attribute: Attribute, events: Events, *, date_format: str | None = None) -> list[str]:
    """The attribute per record, one event at a time in plain Python."""
    assert attribute.at is not None
    at, window = attribute.at, attribute.window_days
    types = set(attribute.event_types)
    days: dict[str, list[dt.date]] = {r: [] for r in events.record_ids}
    for person, when, kind in events.rows:
        if person.strip() not in days:
            continue
        try:
            iso = standardise_date(when, fmt=date_format)
        except InvalidValue:
            continue
        if iso is None:
            continue
        day = dt.date.fromisoformat(iso)
        if day > at or (window is not None and (at - day).days >= window):
            continue
        if types and kind.strip() not in types:
            continue
        days[person.strip()].append(day)

    def band(x: int) -> str:
        assert attribute.bands is not None
        labels = band_labels(attribute.bands)
        return labels[max(i for i, lower in enumerate(attribute.bands) if x >= lower)]

    out = []
    for record in events.record_ids:
        mine = days[record]
        if attribute.derive == "event_count":
            out.append(band(len(mine)))
        elif attribute.derive == "event_any":
            out.append("yes" if mine else "no")
        else:
            out.append(band((at - max(mine)).days) if mine else NO_EVENT)
    return out


def left_out(events: Events, *, date_format: str | None = None) -> tuple[int, int, int]:
    """(unmatched, undated, invalid) events, counted one by one."""
    known = set(events.record_ids)
    unmatched = undated = invalid = 0
    for person, when, _ in events.rows:
        if person.strip() not in known:
            unmatched += 1
            continue
        try:
            undated += standardise_date(when, fmt=date_format) is None
        except InvalidValue:
            invalid += 1
    return unmatched, undated, invalid


@pytest.mark.parametrize("seed", range(6))
def test_each_derivation_equals_the_reference_whatever_the_chunk_size(
    tmp_path: Path, seed: int
) -> None:
    rng = np.random.default_rng([20261204, seed])
    events = random_events(tmp_path, rng, people=int(rng.integers(1, 120)), events=1500)
    attributes = [random_attribute(rng, f"a{i}") for i in range(6)]
    expected = {a.name: reference(a, events) for a in attributes}
    for chunk in CHUNKS:
        got = derive_events(
            events.table(),
            attributes=attributes,
            record_ids=events.record_ids,
            chunk_bytes=chunk,
        )
        assert got.values == expected, f"chunk_bytes={chunk}"
        assert (got.unmatched, got.undated, got.invalid) == left_out(events)
        assert got.events == len(events.rows)


def test_windows_types_and_events_after_the_reference_date(tmp_path: Path) -> None:
    path = tmp_path / "incidents.csv"
    rows = [
        ("R1", "2024-04-01", "asb"),  # on `at`: counted
        ("R1", "2024-04-02", "asb"),  # after `at`: never counted
        ("R1", "2024-03-03", "fire"),  # 29 days before: inside a 30-day window
        ("R1", "2024-03-02", "asb"),  # 30 days before: outside it
        ("R2", "2023-04-01 23:59:00", "fire"),  # 366 days before
        ("R3", "2024-05-01", "fire"),  # R3's only event is after `at`: as if none
    ]
    write_table(path, rows, np.random.default_rng(1))
    events = Events(path=path, rows=rows, record_ids=["R1", "R2", "R3", "R4"])

    def attribute(derive: str, **fields) -> Attribute:
        return Attribute.model_validate(
            {"name": derive, "partner": "police", "derive": derive, "events": "incidents",
             "at": AT, **fields}
        )  # fmt: skip

    cases = [
        (attribute("event_count", bands=[0, 1, 3]), ["3+", "1-2", "0", "0"]),
        (attribute("event_count", bands=[0, 1, 3], window_days=30), ["1-2", "0", "0", "0"]),
        (attribute("event_count", bands=[0, 1], event_types=["fire"]), ["1+", "1+", "0", "0"]),
        (attribute("event_any", window_days=1), ["yes", "no", "no", "no"]),
        (attribute("event_any", event_types=["burglary"]), ["no", "no", "no", "no"]),
        (attribute("event_latest", bands=[0, 7, 366]), ["0-6", "366+", NO_EVENT, NO_EVENT]),
        (
            attribute("event_latest", bands=[0, 7], event_types=["fire"]),
            ["7+", "7+"] + [NO_EVENT] * 2,
        ),
        (attribute("event_latest", bands=[0, 7], window_days=365), ["0-6"] + [NO_EVENT] * 3),
    ]
    for attr, expected in cases:
        assert reference(attr, events) == expected, attr
        got = derive_events(events.table(), attributes=[attr], record_ids=events.record_ids)
        assert got.values[attr.name] == expected, attr


@pytest.mark.parametrize("seed", range(3))
def test_malformed_dates_are_left_out_under_on_invalid_missing(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng([7, seed])
    events = random_events(tmp_path, rng, people=50, events=1200, malformed=0.1)
    attributes = [random_attribute(rng, f"a{i}") for i in range(4)]
    unmatched, undated, invalid = left_out(events)
    assert invalid > 0
    for chunk in CHUNKS[:3]:
        got = derive_events(
            events.table(),
            attributes=attributes,
            record_ids=events.record_ids,
            on_invalid="missing",
            chunk_bytes=chunk,
        )
        assert got.values == {a.name: reference(a, events) for a in attributes}
        assert (got.unmatched, got.undated, got.invalid) == (unmatched, undated, invalid)


@pytest.mark.parametrize("seed", range(3))
def test_a_malformed_date_stops_the_node_naming_its_row_but_not_its_value(
    tmp_path: Path, seed: int
) -> None:
    rng = np.random.default_rng([8, seed])
    events = random_events(tmp_path, rng, people=50, events=1200, malformed=0.02)
    known = set(events.record_ids)
    first = next(
        i
        for i, (person, when, _) in enumerate(events.rows)
        if person.strip() in known and when in MALFORMED
    )
    attribute = random_attribute(rng, "a")
    for chunk in CHUNKS[:3]:
        with pytest.raises(InputDataError) as info:
            derive_events(
                events.table(), attributes=[attribute], record_ids=events.record_ids,
                chunk_bytes=chunk,
            )  # fmt: skip
        message = str(info.value)
        assert f"{events.path}: row {first + 2}, column 'occurred'" in message
        assert "event table 'incidents'" in message and 'on_invalid = "missing"' in message
        assert events.rows[first][1] not in message
        assert not any(r in message for r in events.record_ids)


def test_an_unreadable_date_of_someone_outside_the_extract_is_no_error(tmp_path: Path) -> None:
    path = tmp_path / "incidents.csv"
    rows = [("R1", "2024-01-01", "asb"), ("X9", "pending", "asb")]
    write_table(path, rows, np.random.default_rng(2))
    events = Events(path=path, rows=rows, record_ids=["R1"])
    count = Attribute(name="n", partner="police", derive="event_count", events="incidents",
                      at=AT, bands=[0, 1])  # fmt: skip
    got = derive_events(events.table(), attributes=[count], record_ids=["R1"])
    assert got.values == {"n": ["1+"]} and (got.unmatched, got.invalid) == (1, 0)


def test_the_tables_date_format_is_respected(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    events = random_events(tmp_path, rng, people=40, events=600)
    # The same events with US month-first dates and times: only the table's format reads them.
    fmt = "%m/%d/%Y %H:%M"
    us = []
    for person, when, kind in events.rows:
        iso = standardise_date(when) if when not in MALFORMED else None
        day = dt.date.fromisoformat(iso) if iso else None
        us.append((person, day.strftime(fmt.replace("%H:%M", "10:30")) if day else "", kind))
    path = tmp_path / "us.csv"
    write_table(path, us, rng)
    us_events = Events(path=path, rows=us, record_ids=events.record_ids)
    attributes = [random_attribute(rng, f"a{i}") for i in range(4)]
    got = derive_events(
        us_events.table(date_format=fmt), attributes=attributes, record_ids=events.record_ids
    )
    assert got.values == {a.name: reference(a, events) for a in attributes}
    assert got.values == {a.name: reference(a, us_events, date_format=fmt) for a in attributes}
    # Read day first, as the node reads dates without a format, most of them are not dates.
    with pytest.raises(InputDataError, match=r"date does not match the format '%Y-%m-%d'"):
        derive_events(
            us_events.table(date_format="%Y-%m-%d"),
            attributes=attributes,
            record_ids=events.record_ids,
        )


def test_events_of_people_outside_the_extract_are_counted_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = random_events(tmp_path, np.random.default_rng(4), people=20, events=300)
    unmatched, undated, _ = left_out(events)
    any_event = Attribute(name="any", partner="police", derive="event_any", events="incidents",
                          at=AT)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="oda_fed.node.events"):
        derive_events(events.table(), attributes=[any_event], record_ids=events.record_ids)
    assert f"event table 'incidents' ({events.path}): 300 events read" in caplog.text
    assert f"{unmatched} of people not in the extract, {undated} without a date" in caplog.text
    assert not any(r in caplog.text for r in events.record_ids)


def test_a_header_and_no_events_gives_every_record_none(tmp_path: Path) -> None:
    path = tmp_path / "incidents.csv"
    write_table(path, [], np.random.default_rng(5))
    events = Events(path=path, rows=[], record_ids=["R1", "R2"])
    latest = Attribute(name="l", partner="police", derive="event_latest", events="incidents",
                       at=AT, bands=[0, 30])  # fmt: skip
    got = derive_events(events.table(), attributes=[latest], record_ids=events.record_ids)
    assert got.values == {"l": [NO_EVENT, NO_EVENT]} and got.events == 0


def test_errors_name_the_file_the_column_and_what_to_change(tmp_path: Path) -> None:
    count = Attribute(name="n", partner="police", derive="event_count", events="incidents",
                      at=AT, bands=[0, 1], event_types=["fire"])  # fmt: skip
    path = tmp_path / "incidents.csv"
    table = Events(path=path, rows=[], record_ids=[]).table()

    def error(**fields) -> str:
        with pytest.raises(InputDataError) as info:
            derive_events(
                table.model_copy(update=fields), attributes=[count], record_ids=["R1"],
                chunk_bytes=128,
            )  # fmt: skip
        return str(info.value)

    assert (
        error() == f"{path}: event table 'incidents' not found; check its path in [[source.events]]"
    )
    path.write_text("")
    assert "is empty (no header row)" in error()
    path.write_bytes("person,occurred,kind\nR1,2024-01-01,fire\n".encode("utf-16"))
    assert "is not UTF-8 text" in error()
    # A byte that is not UTF-8 far down the file is found when its block is read.
    body = "".join(f"R{i},2024-01-01,fire\n" for i in range(100))
    path.write_bytes(f"person,occurred,kind\n{body}R1,2024-01-0\xe9,fire\n".encode("latin-1"))
    assert "is not UTF-8 text (after row" in error()
    path.write_text(f"person,occurred,kind\n{body}")
    message = error(date="when")
    assert message.startswith(f"{path}: event table 'incidents' has no column 'when' (its date")
    assert "Columns found: person, occurred, kind" in message
    assert "has no column 'kind_code' (its type" in error(type="kind_code")
    assert "names no type column: set type" in error(type=None)
    path.write_text(f"person,occurred,kind\n{body}R1,2024-01-01,fire,Okafor\n")
    message = error()
    assert "malformed CSV after row" in message and "Okafor" not in message
    path.write_text(f"person,occurred,kind\n{body}")
    assert derive_events(table, attributes=[count], record_ids=["R1"]).values == {"n": ["1+"]}


def test_derive_reads_each_table_once_and_checks_every_value(tmp_path: Path) -> None:
    events = random_events(tmp_path, np.random.default_rng(6), people=30, events=400)
    count = Attribute(name="n", partner="police", derive="event_count", events="incidents",
                      at=AT, bands=[0, 1, 3])  # fmt: skip
    latest = Attribute(name="l", partner="police", derive="event_latest", events="incidents",
                       at=AT, bands=[0, 30, 365])  # fmt: skip
    tables = EventTables([events.table()], record_ids=events.record_ids, attributes=[count, latest])
    assert derive(count, [], events=tables) == reference(count, events)
    events.path.unlink()  # read once, for both: the second needs no file
    assert derive(latest, [], events=tables) == reference(latest, events)

    # A value outside the declared domain still stops the node, naming the table.
    few = Attribute.model_validate(
        {**count.model_dump(), "name": "few", "domain": {"codes": ["0"]}}
    )
    write_table(events.path, events.rows, np.random.default_rng(6))
    tables = EventTables([events.table()], record_ids=events.record_ids, attributes=[few])
    with pytest.raises(InputDataError, match=r"attribute 'few': .* outside the domain") as info:
        derive(few, [], events=tables)
    assert "event table 'incidents' in [[source.events]]" in str(info.value)


def test_an_attribute_over_a_table_node_toml_does_not_give_says_what_to_add(
    tmp_path: Path,
) -> None:
    referrals = Attribute(name="referred", partner="police", derive="event_any",
                          events="referrals", at=AT)  # fmt: skip
    events = random_events(tmp_path, np.random.default_rng(7), people=5, events=10)
    tables = EventTables([events.table()], record_ids=events.record_ids, attributes=[referrals])
    for given in (tables, None):
        with pytest.raises(InputDataError) as info:
            derive(referrals, [], events=given)
        assert 'add [[source.events]] with name = "referrals"' in str(info.value)
    with pytest.raises(InputDataError, match="names event table 'incidents' twice"):
        EventTables([events.table(), events.table()], record_ids=[], attributes=[])
