"""Day-number dates: formatting matches strptime, and date errors keep dates valid."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.synth import PROFILES
from oda_fed.synth.dates import (
    N_DAYS,
    day_typo,
    format_days,
    from_ymd,
    swap_day_month,
    year_typo,
    ymd,
)

FIRST = date(1925, 1, 1)
days_lists = st.lists(st.integers(0, N_DAYS - 1), min_size=1, max_size=50)


def as_date(day: int) -> date:
    return FIRST + timedelta(days=int(day))


@pytest.mark.parametrize("fmt", sorted({p.date_format for p in PROFILES}))
def test_every_partner_format_round_trips_through_strptime(fmt: str) -> None:
    days = np.arange(0, N_DAYS, 13)
    written = format_days(days, fmt)
    assert [datetime.strptime(w, fmt).date() for w in written] == [as_date(d) for d in days]


def test_unsupported_directives_are_refused() -> None:
    with pytest.raises(ValueError, match="%y"):
        format_days(np.array([0]), "%d/%m/%y")


def test_ymd_and_from_ymd_are_inverse_and_reject_impossible_dates() -> None:
    days = np.arange(N_DAYS)
    back, valid = from_ymd(*ymd(days))
    assert valid.all() and (back == days).all()
    _, valid = from_ymd(
        np.array([2023, 2024, 1924, 2025, 2000]),
        np.array([2, 2, 6, 1, 13]),
        np.array([29, 29, 1, 1, 1]),
    )
    assert valid.tolist() == [False, True, False, False, False]


@given(days_lists)
@settings(max_examples=50, deadline=None, derandomize=True)
def test_day_and_month_swap_only_when_both_are_at_most_12(days: list[int]) -> None:
    before = np.array(days)
    after, changed = swap_day_month(before)
    for b, a, c in zip(before, after, changed, strict=True):
        old, new = as_date(b), as_date(a)
        can = old.day <= 12 and old.month <= 12 and old.day != old.month
        assert c == can
        assert (new.year, new.month, new.day) == (
            (old.year, old.day, old.month) if can else (old.year, old.month, old.day)
        )


@given(days_lists, st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None, derandomize=True)
def test_day_typos_keep_year_and_month(days: list[int], seed: int) -> None:
    before = np.array(days)
    after = day_typo(before, np.random.default_rng(seed))
    assert ((after >= 0) & (after < N_DAYS)).all()
    for b, a in zip(before, after, strict=True):
        old, new = as_date(b), as_date(a)
        assert (new.year, new.month) == (old.year, old.month) and new.day != old.day


@given(days_lists, st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None, derandomize=True)
def test_year_typos_keep_day_and_month(days: list[int], seed: int) -> None:
    before = np.array(days)
    after = year_typo(before, np.random.default_rng(seed))
    assert ((after >= 0) & (after < N_DAYS)).all()
    for b, a in zip(before, after, strict=True):
        old, new = as_date(b), as_date(a)
        assert (new.month, new.day) == (old.month, old.day) and new.year != old.year
        if (old.month, old.day) != (2, 29):
            assert abs(new.year - old.year) in {1, 10} or str(new.year)[2:] == str(old.year)[:1:-1]


def test_leap_days_survive_a_year_typo(rng: np.random.Generator) -> None:
    leap_days, _ = from_ymd(np.array([1928, 1960, 2000, 2024]), np.full(4, 2), np.full(4, 29))
    after = year_typo(leap_days, rng)
    for a in after:
        assert (as_date(a).month, as_date(a).day) == (2, 29)
