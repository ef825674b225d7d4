"""Derive a partner's declared attributes at its node: only the derived value may leave.

Each attribute the project declares for this partner (``[[attributes]]``) is derived from the
column its layout maps to it (``[source.attributes]``): the value as it is, a category, an age
band at a reference date, or a value looked up in a table the node holds; or from one of the
partner's event tables (``[[source.events]]``, see :mod:`oda_fed.node.events`). Then every value is
checked against the attribute's domain; a column mapped by mistake (surnames for wards) stops the
node with a clear error before anything is sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from oda_fed.config import EVENT_DERIVATIONS, Attribute, EventTable
from oda_fed.errors import InputDataError
from oda_fed.node.events import EventTables, OnInvalid, missing_table
from oda_fed.standardise import InvalidValue, standardise_date


def derive_all(
    attributes: Sequence[Attribute],
    *,
    record_ids: Sequence[str],
    columns: Mapping[str, Sequence[str]],
    date_format: str | None = None,
    lookups: Mapping[str, Path] | None = None,
    events: Sequence[EventTable] = (),
    on_invalid: OnInvalid = "error",
) -> dict[str, list[str]]:
    """Each of ``attributes`` for every record of an extract, as :func:`derive` derives it.

    ``columns`` holds the raw column mapped to each attribute (an encoded extract's
    ``attributes``); each event table is read once, for all the attributes derived from it. The
    node derives this way for a round, and ``oda-fed analyse`` for each file.
    """
    tables = EventTables(
        events, record_ids=record_ids, attributes=attributes, on_invalid=on_invalid
    )
    return {
        a.name: derive(
            a,
            [] if a.derive in EVENT_DERIVATIONS else _mapped(columns, a.name),
            date_format=date_format,
            lookups=lookups,
            events=tables,
        )
        for a in attributes
    }


def _mapped(columns: Mapping[str, Sequence[str]], name: str) -> Sequence[str]:
    """The raw column of attribute ``name``, or an error saying how to map it."""
    if name not in columns:
        raise InputDataError(
            f"the project asks this partner for attribute '{name}', but no column is mapped to "
            f'it: set {name} = "<column>" under [source.attributes] in node.toml (or in the '
            "partner's [source] of the --sources file, for oda-fed analyse)"
        )
    return columns[name]


def derive(
    attribute: Attribute,
    raw: Sequence[str],
    *,
    date_format: str | None = None,
    lookups: Mapping[str, Path] | None = None,
    events: EventTables | None = None,
) -> list[str]:
    """``attribute`` for each raw value of its column; ``""`` where it is not known.

    Parameters
    ----------
    attribute
        The attribute as the project declares it.
    raw
        Its column's values, one per record of the extract; not read for an attribute derived
        from events.
    date_format
        The extract's date format, for ``age_band``.
    lookups
        node.toml ``[source.lookups]``, for ``lookup``.
    events
        The node's event tables matched to the extract's records, for ``event_count``,
        ``event_any`` and ``event_latest``.

    Raises
    ------
    InputDataError
        A derived value is outside the attribute's domain; a lookup table is missing or
        malformed; an event table is not given, or cannot be read (see
        :func:`oda_fed.node.events.derive_events`). Messages give counts and settings, never a
        value.

    Examples
    --------
    >>> band = Attribute(name="age", partner="council", derive="age_band",
    ...                  at=dt.date(2026, 4, 1), bands=[0, 18, 65])
    >>> derive(band, ["2010-06-01", "1950-01-31", ""])
    ['0-17', '65+', '']
    """
    if attribute.derive == "category":
        categories = attribute.categories or {}
        values = [categories.get(v.strip(), "") for v in raw]
    elif attribute.derive == "age_band":
        values = _age_bands(attribute, raw, date_format)
    elif attribute.derive == "lookup":
        table = _lookup_table(attribute, lookups or {})
        values = [table.get(_key(v), "") for v in raw]
    elif attribute.derive in EVENT_DERIVATIONS:
        if events is None:
            raise missing_table(attribute)
        values = events.values(attribute)
    else:
        values = [v.strip() for v in raw]
    problem = attribute.problem(values)
    if problem:
        where = (
            f"event table '{attribute.events}' in [[source.events]]"
            if attribute.derive in EVENT_DERIVATIONS
            else f"the column node.toml maps to '{attribute.name}' in [source.attributes]"
            + (" and its lookup table" if attribute.derive == "lookup" else "")
        )
        raise InputDataError(f"{problem}; nothing was sent. Check {where}")
    return values


def _age_bands(attribute: Attribute, raw: Sequence[str], date_format: str | None) -> list[str]:
    assert attribute.at is not None and attribute.bands is not None  # the model checks both
    labels = attribute.labels or []
    at = attribute.at
    out = []
    for value in raw:
        try:
            iso = standardise_date(value, fmt=date_format)
        except InvalidValue:
            iso = None  # an unreadable date gives no band rather than a wrong one
        if iso is None:
            out.append("")
            continue
        born = dt.date.fromisoformat(iso)
        age = at.year - born.year - ((at.month, at.day) < (born.month, born.day))
        band = sum(1 for lower in attribute.bands if age >= lower) - 1
        out.append(labels[band] if band >= 0 else "")
    return out


def _key(value: str) -> str:
    """How a value is matched in a lookup table: case and spaces do not matter."""
    return "".join(value.split()).upper()


def _lookup_table(attribute: Attribute, lookups: Mapping[str, Path]) -> dict[str, str]:
    name = attribute.lookup
    path = lookups.get(name or "")
    if path is None:
        raise InputDataError(
            f"attribute '{attribute.name}' is looked up in table '{name}', but node.toml gives no "
            f'file for it: add [source.lookups] {name} = "path/to/{name}.csv"'
        )
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputDataError(f"{path}: lookup table '{name}' not found") from None
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputDataError(f"{path}: lookup table '{name}' cannot be read ({exc})") from None
    if frame.shape[1] < 2:
        raise InputDataError(
            f"{path}: lookup table '{name}' needs two columns: the value, and what it becomes"
        )
    keys = frame.iloc[:, 0].map(_key)
    if keys.duplicated().any():
        raise InputDataError(
            f"{path}: lookup table '{name}' lists {int(keys.duplicated().sum())} value(s) twice"
        )
    return dict(zip(keys, frame.iloc[:, 1].str.strip(), strict=True))
