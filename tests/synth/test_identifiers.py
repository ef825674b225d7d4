"""The identifiers look like real UK ones: NHS numbers, postcodes, dates, wards, names, homes."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from oda_fed.synth import PROFILES
from oda_fed.synth.dates import ymd
from oda_fed.synth.generator import Simulation
from oda_fed.synth.population import make_population
from oda_fed.synth.profiles import STYLES

# Royal Mail's published shape of a postcode (BS 7666), space optional, any case.
UK_POSTCODE = re.compile(
    r"(?:[A-PR-UWYZ][0-9][0-9]?|[A-PR-UWYZ][A-HK-Y][0-9][0-9]?|[A-PR-UWYZ][0-9][A-HJKPSTUW]"
    r"|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY]) ?[0-9][ABD-HJLNP-UW-Z]{2}",
    re.IGNORECASE,
)


def nhs_number_is_valid(number: str) -> bool:
    """Modulus 11, written independently of the generator's vectorised version."""
    if len(number) != 10 or not number.isdigit():
        return False
    total = sum(
        int(digit) * weight for digit, weight in zip(number[:9], range(10, 1, -1), strict=True)
    )
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(number[9])


def column(sim: Simulation, partner: str, field: str) -> pd.Series:
    profile = next(p for p in PROFILES if p.id == partner)
    return sim.synthetic.partners[partner][profile.columns[field]]


def test_the_check_itself_knows_a_good_and_a_bad_number() -> None:
    assert nhs_number_is_valid("9434765919")  # the NHS's own published example
    assert not nhs_number_is_valid("9434765918")
    assert not nhs_number_is_valid("943476591")


@pytest.mark.parametrize("partner", ["social_care", "nhs_trust"])
def test_nhs_numbers_pass_modulus_11_and_are_mostly_present(
    all_partners: Simulation, partner: str
) -> None:
    written = column(all_partners, partner, "nhs_number")
    present = written[written != ""].str.replace(" ", "", regex=False)
    assert present.map(nhs_number_is_valid).all()
    assert 0.7 < len(present) / len(written) < 0.97
    if STYLES[partner].nhs_style == "spaced":
        assert written[written != ""].str.fullmatch(r"\d{3} \d{3} \d{4}").all()


def test_a_person_has_one_nhs_number_and_no_one_shares_it(all_partners: Simulation) -> None:
    numbers = all_partners.population.nhs_number
    assert len(set(numbers)) == len(numbers)
    written = column(all_partners, "nhs_trust", "nhs_number")
    people = all_partners.members["nhs_trust"]
    present = (written != "").to_numpy()
    np.testing.assert_array_equal(written[present].to_numpy(), numbers[people[present]])


def test_postcodes_have_the_uk_shape(all_partners: Simulation) -> None:
    for profile in PROFILES:
        written = column(all_partners, profile.id, "postcode")
        present = written[written != ""]
        assert present.map(lambda p: UK_POSTCODE.fullmatch(p) is not None).all(), profile.id
        assert len(present) / len(written) > 0.8
    assert column(all_partners, "fire", "postcode").str.contains(" ").sum() == 0
    assert (column(all_partners, "housing", "postcode") == column(
        all_partners, "housing", "postcode").str.lower()).all()  # fmt: skip


def test_every_date_parses_with_the_partners_format(all_partners: Simulation) -> None:
    for profile in PROFILES:
        written = column(all_partners, profile.id, "date_of_birth")
        present = written[written != ""]
        parsed = [datetime.strptime(d, profile.date_format).date() for d in present]
        assert min(parsed) >= date(1925, 1, 1) and max(parsed) <= date(2024, 12, 31)
        assert len(present) / len(written) > 0.9


def test_sex_is_written_with_each_partners_labels(all_partners: Simulation) -> None:
    for profile in PROFILES:
        labels = set(column(all_partners, profile.id, "sex"))
        assert labels - {""} == set(STYLES[profile.id].sex_labels), profile.id


def test_each_postcode_district_lies_in_one_ons_style_ward(all_partners: Simulation) -> None:
    council = all_partners.synthetic.partners["council"]
    assert council["ward_code"].str.fullmatch(r"E05\d{6}").all()
    assert 20 <= council["ward_code"].nunique() <= 60
    located = council[council["post_code"] != ""]
    district = located["post_code"].str.split(" ").str[0]
    assert (located.groupby(district)["ward_code"].nunique() == 1).all()


def test_names_include_accents_hyphens_and_apostrophes() -> None:
    people = make_population(size=30_000, rng=np.random.default_rng(2))
    names = set(people.first_name) | set(people.last_name)
    assert any(not n.isascii() for n in names)
    assert any("-" in n for n in names)
    assert any("'" in n for n in names)
    top = Counter(people.last_name).most_common(1)[0][0]
    assert top == "Smith"  # frequency-weighted, not uniform


def test_ascii_systems_drop_accents_and_shouting_systems_use_capitals(
    all_partners: Simulation,
) -> None:
    police = column(all_partners, "police", "last_name")
    assert police.map(str.isascii).all()
    assert (police == police.str.upper()).all()
    social_care = column(all_partners, "social_care", "first_name")
    assert not social_care.map(str.isascii).all()


def test_households_share_addresses_and_surnames_and_twins_differ_by_name() -> None:
    people = make_population(size=20_000, rng=np.random.default_rng(3))
    homes = pd.DataFrame(
        {
            "household": people.household,
            "last": people.last_name,
            "first": people.first_name,
            "dob": people.dob,
        }
    )
    sizes = homes.groupby("household").size()
    assert 2.1 < sizes.mean() < 2.7 and (sizes >= 2).mean() > 0.5
    same_surname = homes.groupby("household")["last"].nunique()[sizes >= 2]
    assert (same_surname == 1).mean() > 0.5
    twins = homes[homes.duplicated(["household", "last", "dob"], keep=False)]
    assert len(twins) >= 10
    assert not twins.duplicated(["household", "first"]).any()
    addresses = people.households.address
    assert len(set(addresses)) == len(addresses)
    pattern = re.compile(r"(Flat \d+, )?\d+ [\w' ë-]+, [A-Z][a-z]+")
    assert all(pattern.fullmatch(a) for a in addresses[:2000])
    assert any(a.startswith("Flat ") for a in addresses)


def test_ages_look_like_a_uk_population() -> None:
    people = make_population(size=50_000, rng=np.random.default_rng(4))
    age = 2024 - ymd(people.dob)[0]
    assert 0.15 < (age < 18).mean() < 0.32
    assert 0.10 < (age >= 65).mean() < 0.25
    assert age.max() >= 95 and age.min() == 0
    assert 0.45 < people.male.mean() < 0.55
