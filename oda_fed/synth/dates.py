"""Dates of birth as day numbers: vectorised arithmetic, formatting and valid-date errors.

A date is an ``int`` day number counted from 1925-01-01, the first day a synthetic date of birth can
take; the last is 2024-12-31. Keeping dates as integers lets a million of them be formatted by one
table lookup instead of a million ``strftime`` calls.
"""

from __future__ import annotations

import functools
import re

import numpy as np

__all__ = [
    "FIRST_DAY",
    "LAST_DAY",
    "N_DAYS",
    "day_typo",
    "format_days",
    "from_ymd",
    "swap_day_month",
    "year_typo",
    "ymd",
]

FIRST_DAY = np.datetime64("1925-01-01", "D")
LAST_DAY = np.datetime64("2024-12-31", "D")
#: Number of representable days; day ``N_DAYS`` (2025-01-01) is the reference day for ages.
N_DAYS = int((LAST_DAY - FIRST_DAY).astype(int)) + 1
FIRST_YEAR, LAST_YEAR = 1925, 2024

# Written out rather than taken from the C library so that output never depends on the locale.
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DIRECTIVE = re.compile(r"(%.)")


def ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split day numbers into year, month (1-12) and day of month (1-31).

    Examples
    --------
    >>> [int(a[0]) for a in ymd(np.array([0]))]
    [1925, 1, 1]
    """
    dates = FIRST_DAY + np.asarray(days, dtype=np.int64)
    months = dates.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def from_ymd(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Day numbers for year, month, day arrays, and a mask of the triples that are valid dates.

    Invalid triples (30 February, a year outside 1925-2024) get an arbitrary day number: use the
    mask.

    Examples
    --------
    >>> days, ok = from_ymd(np.array([1925, 2023]), np.array([1, 2]), np.array([2, 29]))
    >>> int(days[0]), ok.tolist()
    (1, [True, False])
    """
    year = np.asarray(year, dtype=np.int64)
    month = np.asarray(month, dtype=np.int64)
    day = np.asarray(day, dtype=np.int64)
    in_range = (month >= 1) & (month <= 12)
    months = ((year - 1970) * 12 + np.clip(month, 1, 12) - 1).astype("datetime64[M]")
    first = months.astype("datetime64[D]")
    length = ((months + 1).astype("datetime64[D]") - first).astype(np.int64)
    valid = in_range & (year >= FIRST_YEAR) & (year <= LAST_YEAR) & (day >= 1) & (day <= length)
    return (first - FIRST_DAY).astype(np.int64) + day - 1, valid


@functools.cache
def _table(fmt: str) -> np.ndarray:
    year, month, day = ymd(np.arange(N_DAYS))
    parts: list[list[str]] = []
    for token in _DIRECTIVE.split(fmt):
        if token == "%d":
            parts.append([f"{d:02d}" for d in day])
        elif token == "%m":
            parts.append([f"{m:02d}" for m in month])
        elif token == "%Y":
            parts.append([f"{y:04d}" for y in year])
        elif token == "%b":
            parts.append([_MONTHS[m - 1][:3] for m in month])
        elif token == "%B":
            parts.append([_MONTHS[m - 1] for m in month])
        elif token == "%%":
            parts.append(["%"] * N_DAYS)
        elif token.startswith("%"):
            raise ValueError(f"date format directive {token!r} is not supported")
        elif token:
            parts.append([token] * N_DAYS)
    table = np.array(["".join(row) for row in zip(*parts, strict=True)], dtype=object)
    table.flags.writeable = False
    return table


def format_days(days: np.ndarray, fmt: str) -> np.ndarray:
    """Format day numbers with a ``strftime``-style format (``%d %m %Y %b %B %%`` only).

    Month names are English whatever the locale, as ``strptime`` reads them in the C locale.

    Examples
    --------
    >>> format_days(np.array([0, 365]), "%d-%b-%Y").tolist()
    ['01-Jan-1925', '01-Jan-1926']
    """
    return _table(fmt)[np.asarray(days, dtype=np.int64)]


def swap_day_month(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Swap day and month where both are at most 12 and differ (a US/UK entry mix-up).

    Returns the new day numbers and the mask of dates that changed; real systems validate dates,
    so a swap that would give an invalid date never happens.

    Examples
    --------
    >>> days, _ = from_ymd(np.array([1980]), np.array([3]), np.array([7]))
    >>> [int(a[0]) for a in ymd(swap_day_month(days)[0])]
    [1980, 7, 3]
    """
    year, month, day = ymd(days)
    changed = (day <= 12) & (month <= 12) & (day != month)
    swapped, _ = from_ymd(year, day, month)
    return np.where(changed, swapped, days), changed


def _retype(
    days: np.ndarray, candidates: np.ndarray, valid: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Pick one valid candidate per row at random; ``candidates`` and ``valid`` are (n, k)."""
    scores = rng.random(candidates.shape) + valid  # any valid candidate outranks every invalid one
    pick = np.argmax(scores, axis=1)
    rows = np.arange(len(days))
    return np.where(valid[rows, pick], candidates[rows, pick], days)


def day_typo(days: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mistype the day of month (off by one or ten, digits swapped) keeping the date valid.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> days = np.arange(0, 30000, 97)
    >>> bool((day_typo(days, rng) != days).all())
    True
    """
    year, month, day = ymd(days)
    swapped_digits = (day % 10) * 10 + day // 10
    options = np.stack([day - 1, day + 1, day - 10, day + 10, swapped_digits], axis=1)
    cand, valid = from_ymd(year[:, None], month[:, None], options)
    valid &= options != day[:, None]
    return _retype(days, cand, valid, rng)


def year_typo(days: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mistype the year (off by one or ten, last two digits swapped) keeping the date valid.

    A 29 February that fits no other candidate moves four years, to stay a valid date.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> days = np.arange(0, 30000, 97)
    >>> bool((year_typo(days, rng) != days).all())
    True
    """
    year, month, day = ymd(days)
    swapped_digits = year // 100 * 100 + (year % 10) * 10 + (year // 10) % 10
    options = np.stack(
        [year - 1, year + 1, year - 10, year + 10, swapped_digits, year - 4, year + 4], axis=1
    )
    cand, valid = from_ymd(options, month[:, None], day[:, None])
    valid &= options != year[:, None]
    # The four-year moves are only a fallback for leap days: they are not a typical typo.
    common = valid[:, :5]
    valid[:, 5:] &= ~common.any(axis=1, keepdims=True)
    return _retype(days, cand, valid, rng)
