"""Errors: the level sets the rates, and every error is a realistic one."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from oda_fed.synth.corruption import ERROR_KINDS, RATES, heavy_errors
from oda_fed.synth.dates import ymd
from oda_fed.synth.generator import Simulation, simulate
from oda_fed.synth.lexicon import load_lexicon

LEVELS = ("low", "medium", "high")


@pytest.fixture(scope="module")
def by_level() -> dict[str, Simulation]:
    return {level: simulate(population=3000, partners=3, seed=21, errors=level) for level in LEVELS}


def council(sim: Simulation):
    return sim.synthetic.partners["council"], sim.members["council"], sim.hits["council"]


def test_every_rate_grows_with_the_level() -> None:
    for kind in ERROR_KINDS:
        low, medium, high = (getattr(RATES[level], kind) for level in LEVELS)
        assert 0 < low < medium < high <= 0.5, kind


def test_measured_last_name_error_rate_grows_with_the_level(
    by_level: dict[str, Simulation],
) -> None:
    rates = []
    for level in LEVELS:
        frame, people, _ = council(by_level[level])
        true_last = by_level[level].population.last_name[people]
        rates.append(float((frame["surname"].to_numpy() != true_last).mean()))
    assert rates[0] < rates[1] < rates[2]
    assert 0.02 < rates[1] < 0.10  # "a few percent per kind" at medium


def test_a_higher_level_only_adds_errors(by_level: dict[str, Simulation]) -> None:
    for kind in ("date_typo", "sex_flip"):
        low, medium, high = (by_level[level].hits["police"][kind] for level in LEVELS)
        assert not (low & ~medium).any() and not (medium & ~high).any()
        assert low.sum() < medium.sum() < high.sum()


def test_heavy_errors_stay_rare_at_medium(medium3: Simulation) -> None:
    for partner, hits in medium3.hits.items():
        heavy = heavy_errors(hits).mean()
        assert 0.005 < heavy <= 0.04, partner


def test_every_kind_of_error_happens(all_partners: Simulation) -> None:
    for kind in ERROR_KINDS:
        hit = sum(int(hits[kind].sum()) for hits in all_partners.hits.values())
        assert hit > 0, kind


def test_dates_are_swapped_only_when_day_and_month_are_both_at_most_12(
    all_partners: Simulation,
) -> None:
    frame, people, hits = council(all_partners)
    year, month, day = ymd(all_partners.population.dob[people])
    swapped = hits["date_swap"] & ~hits["date_typo"] & ~hits["date_of_birth_missing"]
    assert swapped.sum() > 10
    assert ((day[swapped] <= 12) & (month[swapped] <= 12)).all()
    written = [datetime.strptime(d, "%d/%m/%Y") for d in frame["dob"][swapped]]
    assert [(w.year, w.month, w.day) for w in written] == list(
        zip(year[swapped], day[swapped], month[swapped], strict=True)
    )
    untouched = ~(hits["date_swap"] | hits["date_typo"] | hits["date_of_birth_missing"])
    rewritten = frame["dob"][untouched].map(lambda d: datetime.strptime(d, "%d/%m/%Y").date())
    true = [(int(y), int(m), int(d)) for y, m, d in zip(
        year[untouched], month[untouched], day[untouched], strict=True)]  # fmt: skip
    assert [(d.year, d.month, d.day) for d in rewritten] == true


def test_date_typos_change_one_part_and_stay_valid(all_partners: Simulation) -> None:
    frame, people, hits = council(all_partners)
    slipped = hits["date_typo"] & ~hits["date_swap"] & ~hits["date_of_birth_missing"]
    year, month, day = ymd(all_partners.population.dob[people][slipped])
    written = [datetime.strptime(d, "%d/%m/%Y") for d in frame["dob"][slipped]]
    for w, y, m, d in zip(written, year, month, day, strict=True):
        assert (w.year, w.month, w.day) != (y, m, d)
        # A typo hits the day or the year, never the month, nor both.
        assert w.month == m and (w.year != y) != (w.day != d)


def test_name_errors_are_realistic(all_partners: Simulation) -> None:
    frame, people, hits = council(all_partners)
    first, last = frame["forename"].to_numpy(), frame["surname"].to_numpy()
    true_first = all_partners.population.first_name[people]
    true_last = all_partners.population.last_name[people]
    only = hits["name_swap"] & ~np.logical_or.reduce(
        [hits[k] for k in ERROR_KINDS if k.startswith(("first_name", "last_name", "nick", "ini"))]
    )
    assert only.sum() > 0
    assert (first[only] == true_last[only]).all() and (last[only] == true_first[only]).all()
    nicknames = load_lexicon().nicknames
    nick = hits["nickname"] & ~hits["name_swap"] & ~hits["initial"]
    nick &= ~hits["first_name_typo"] & ~hits["first_name_transposition"]
    nick &= ~hits["first_name_missing"]
    assert nick.sum() > 0
    assert all(f in nicknames[t] for f, t in zip(first[nick], true_first[nick], strict=True))
    typo = hits["last_name_typo"] & ~hits["name_swap"] & ~hits["last_name_missing"]
    typo &= ~hits["last_name_transposition"]
    lengths = np.array([len(a) - len(b) for a, b in zip(last[typo], true_last[typo], strict=True)])
    assert set(lengths) <= {-1, 0, 1} and {-1, 0, 1} <= set(lengths)
    transposed = hits["last_name_transposition"] & ~hits["name_swap"] & ~hits["last_name_missing"]
    transposed &= ~hits["last_name_typo"]
    for got, true in zip(last[transposed], true_last[transposed], strict=True):
        assert sorted(got) == sorted(true) and got != true


def test_moved_records_point_at_another_real_address(all_partners: Simulation) -> None:
    frame, people, hits = council(all_partners)
    households = all_partners.population.households
    moved = hits["moved"] & ~hits["address_typo"] & ~hits["address_missing"]
    assert moved.sum() > 0
    addresses = set(households.address)
    assert all(a in addresses for a in frame["address_line_1"][moved])
    home = all_partners.population.household[people]
    assert (frame["address_line_1"].to_numpy()[moved] != households.address[home][moved]).all()


def test_blanks_are_empty_strings() -> None:
    sim = simulate(population=2000, partners=2, seed=2, errors="high")
    frame, _, hits = council(sim)
    assert (frame["forename"][hits["first_name_missing"]] == "").all()
    assert (frame["gender"][hits["sex_missing"]] == "").all()
    assert (frame["dob"][hits["date_of_birth_missing"]] == "").all()
    assert (frame["post_code"][hits["postcode_missing"]] == "").all()
