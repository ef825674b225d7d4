"""Standardisation of dates (of birth, of death…) to ISO 8601 ``YYYY-MM-DD``.

Without an explicit format, numeric dates are read day first, as UK systems write them:
"03/04/1980" is 3 April 1980. Two-digit years are rejected rather than guessed, because for a date
of birth no century pivot is safe. A time of day after the date (as spreadsheet and database
exports add) is ignored.
"""

from __future__ import annotations

import datetime as dt
import re

from oda_fed.standardise.fieldtypes import InvalidValue, present

MIN_YEAR = 1850
"""Dates before this year are taken to be data errors (placeholders such as 1800-01-01)."""

_EXPECTED = "not a date (expected e.g. 31/12/1980 or 1980-12-31)"

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}

# "T00:00:00", " 00:00", " 00:00:00.000", with an optional zone; the zone is not applied.
_TIME_SUFFIX = re.compile(
    r"(?:T|\s+)\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?$", re.IGNORECASE
)
# The separator must be the same on both sides, so "31/12-1980" is rejected.
_DAY_FIRST = re.compile(r"(\d{1,2})([/.\- ])(\d{1,2})\2(\d{4})")
_YEAR_FIRST = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})")
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_MONTH_NAME = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?[\s\-/.]*([a-z]+)\.?[\s\-/.,]*(\d{4})", re.I)
_TWO_DIGIT_YEAR = re.compile(r"\d{1,2}[/.\- ](?:\d{1,2}|[a-z]+)[/.\- ]\d{2}", re.IGNORECASE)


def _parts(text: str) -> tuple[int, int, int]:
    """Return (year, month, day) from one of the accepted forms, or raise ``InvalidValue``."""
    if m := _DAY_FIRST.fullmatch(text):
        return int(m[4]), int(m[3]), int(m[1])
    if m := _YEAR_FIRST.fullmatch(text):
        return int(m[1]), int(m[3]), int(m[4])
    if m := _COMPACT.fullmatch(text):
        return int(m[1]), int(m[2]), int(m[3])
    if (m := _MONTH_NAME.fullmatch(text)) and m[2].lower() in _MONTHS:
        return int(m[3]), _MONTHS[m[2].lower()], int(m[1])
    if _TWO_DIGIT_YEAR.fullmatch(text):
        raise InvalidValue("date", "two-digit year is ambiguous (expected a four-digit year)")
    raise InvalidValue("date", _EXPECTED, value=text)


def loose_date(value: str) -> str | None:
    """A malformed date's digits as ``YYYY-MM-DD`` when it has the shape of a date with a
    four-digit year, though not a calendar date (``29/02/2009``, or ``13/31/1980`` with day and
    month swapped); None otherwise. What it keeps still agrees with the right date in its year,
    its month and day, or with day and month swapped.

    Examples
    --------
    >>> loose_date("29/02/2009"), loose_date("1980-31-12"), loose_date("n/k")
    ('2009-02-29', '1980-31-12', None)
    """
    try:
        year, month, day = _parts(_TIME_SUFFIX.sub("", value.strip()))
    except InvalidValue:
        return None
    if not (MIN_YEAR <= year <= 9999 and 0 < month < 100 and 0 < day < 100):
        return None
    return f"{year:04d}-{month:02d}-{day:02d}"


def _checked(year: int, month: int, day: int, *, text: str) -> dt.date:
    try:
        date = dt.date(year, month, day)
    except ValueError:
        raise InvalidValue("date", "not a calendar date", value=text) from None
    if year < MIN_YEAR:
        raise InvalidValue("date", f"year before {MIN_YEAR}", value=text)
    if date > dt.date.today():
        raise InvalidValue("date", "date is in the future", value=text)
    return date


def standardise_date(value: str | None, *, fmt: str | None = None) -> str | None:
    """Standardise a date to ``YYYY-MM-DD``.

    Without ``fmt`` these forms are accepted, day first: ``31/12/1980``, ``31-12-1980``,
    ``31.12.1980``, ``1980-12-31``, ``19801231``, ``31 Dec 1980``, ``31-Dec-1980``,
    ``31 December 1980`` (also "31st"), each optionally followed by a time such as
    ``T00:00:00``, which is ignored.

    Parameters
    ----------
    value
        The raw date; ``None``, empty or whitespace-only means missing.
    fmt
        A :func:`datetime.datetime.strptime` format the value must match exactly, for sources
        whose format is known (e.g. US month-first ``"%m/%d/%Y"``).

    Returns
    -------
    str or None
        The ISO date, or ``None`` when missing.

    Raises
    ------
    InvalidValue
        When the value is unparseable, not a calendar date (31/02/2000), has a two-digit year,
        is before 1850, or is in the future.

    Examples
    --------
    >>> standardise_date("03/04/1980")
    '1980-04-03'
    >>> standardise_date("31-Dec-1980")
    '1980-12-31'
    >>> standardise_date("12/31/1980", fmt="%m/%d/%Y")
    '1980-12-31'
    """
    text = present(value)
    if text is None:
        return None
    if fmt is not None:
        try:
            parsed = dt.datetime.strptime(text, fmt)
        except ValueError:
            raise InvalidValue("date", f"does not match the format {fmt!r}", value=text) from None
        year, month, day = parsed.year, parsed.month, parsed.day
    else:
        year, month, day = _parts(_TIME_SUFFIX.sub("", text))
    return _checked(year, month, day, text=text).isoformat()
