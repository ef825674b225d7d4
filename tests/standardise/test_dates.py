from __future__ import annotations

import datetime as dt

import pytest

from oda_fed.errors import InputDataError
from oda_fed.standardise import InvalidValue, standardise_date


@pytest.mark.parametrize(
    "raw",
    [
        "31/12/1980",
        "31-12-1980",
        "31.12.1980",
        "31 12 1980",
        "1980-12-31",
        "1980/12/31",
        "19801231",
        "31 Dec 1980",
        "31-Dec-1980",
        "31-DEC-1980",
        "31 December 1980",
        "31st December 1980",
        "31 Dec. 1980",
        "31 December, 1980",
        "1980-12-31T00:00:00",
        "1980-12-31T00:00:00Z",
        "1980-12-31 00:00:00.000",
        "31/12/1980 00:00",
        "  31/12/1980  ",
    ],
)
def test_accepted_forms(raw: str) -> None:
    assert standardise_date(raw) == "1980-12-31"


def test_single_digit_day_and_month() -> None:
    assert standardise_date("3/4/1980") == "1980-04-03"
    assert standardise_date("1980-4-3") == "1980-04-03"
    assert standardise_date("3 Sept 1980") == "1980-09-03"


def test_numeric_dates_are_day_first() -> None:
    assert standardise_date("03/04/1980") == "1980-04-03"
    assert standardise_date("04/03/1980") == "1980-03-04"


def test_explicit_format() -> None:
    assert standardise_date("12/31/1980", fmt="%m/%d/%Y") == "1980-12-31"
    assert standardise_date("03/04/1980", fmt="%m/%d/%Y") == "1980-03-04"
    with pytest.raises(InvalidValue, match="does not match the format"):
        standardise_date("31/12/1980", fmt="%m/%d/%Y")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("31/02/2000", "not a calendar date"),
        ("29/02/1900", "not a calendar date"),
        ("00/01/1980", "not a calendar date"),
        ("1980-13-01", "not a calendar date"),
        ("01/01/1800", "year before 1850"),
        ("31/12/80", "two-digit year"),
        ("31-DEC-80", "two-digit year"),
        ("31/12-1980", "not a date"),
        ("31 Foo 1980", "not a date"),
        ("yesterday", "not a date"),
        ("1980", "not a date"),
    ],
)
def test_invalid_dates(raw: str, problem: str) -> None:
    with pytest.raises(InvalidValue, match=problem) as caught:
        standardise_date(raw)
    assert caught.value.field_type == "date"
    assert str(caught.value).startswith("date: ")


def test_leap_day() -> None:
    assert standardise_date("29/02/2000") == "2000-02-29"


def test_future_date_is_rejected() -> None:
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    with pytest.raises(InvalidValue, match="future"):
        standardise_date(tomorrow.isoformat())
    assert standardise_date(dt.date.today().isoformat()) == dt.date.today().isoformat()


def test_error_message_names_what_is_expected_and_is_typed() -> None:
    with pytest.raises(InputDataError) as caught:
        standardise_date("not a date at all, but a long free-text note about something")
    message = str(caught.value)
    assert "expected e.g. 31/12/1980 or 1980-12-31" in message
    assert len(message) < 120  # the echoed value is cut short
    assert caught.value.exit_code == 3


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_missing(raw: str | None) -> None:
    assert standardise_date(raw) is None
    assert standardise_date(raw, fmt="%d/%m/%Y") is None
