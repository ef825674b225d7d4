"""The true population of a synthetic region: people, households, addresses and NHS numbers.

Everything is drawn with whole-array numpy operations so that a million people take a few seconds.
Nothing here has errors; :mod:`oda_fed.synth.corruption` adds them per partner record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oda_fed.synth.dates import N_DAYS, ymd
from oda_fed.synth.lexicon import ERAS, Lexicon, era_of_birth_year, load_lexicon

__all__ = ["Households", "Population", "make_population", "nhs_check_digit", "nhs_numbers"]

# Share of households of 1..7 people (England, roughly: Census 2021).
_HOUSEHOLD_SIZE_P = np.array([0.30, 0.34, 0.15, 0.13, 0.05, 0.02, 0.01])
# Household kinds; "sharers" are unrelated adults (a house in multiple occupation when 3+).
_SINGLE, _COUPLE, _LONE_PARENT, _FAMILY, _SHARERS = range(5)
_TWIN_RATE = 0.03  # share of families whose two first children are twins (UK ~1.5% of births)
_PARTNER_OWN_SURNAME = 0.25  # unmarried partners keep their own surname
_CHILD_OTHER_SURNAME = 0.15  # children with a surname other than the head's
_OPPOSITE_SEX_PARTNER = 0.95
_HOUSEHOLDS_PER_STREET = 35
_FLAT_RATE = 0.18
_FLATS_PER_BUILDING = 6
_ADDRESSES_PER_POSTCODE = 25
# Letters a postcode's inward code may use (Royal Mail leaves out C, I, K, M, O and V).
_INWARD_LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"), dtype=object)
# English NHS numbers are issued from 400 000 000x-499 999 999x and 600 000 000x-799 999 999x.
_NHS_RANGES = ((400_000_000, 500_000_000), (600_000_000, 800_000_000))
_NHS_WEIGHTS = np.arange(10, 1, -1)


@dataclass(frozen=True)
class Households:
    """One row per household: where it lives."""

    address: np.ndarray  # object, "Flat 3, 41 Mill Road, Leeds"
    postcode: np.ndarray  # object, "LS6 2AB"
    ward_code: np.ndarray  # object, "E05100004"


@dataclass(frozen=True)
class Population:
    """The true identity of every person in the region; arrays are indexed by person id."""

    first_name: np.ndarray  # object
    last_name: np.ndarray  # object
    male: np.ndarray  # bool
    dob: np.ndarray  # int64 day number, see oda_fed.synth.dates
    household: np.ndarray  # int64 index into households
    nhs_number: np.ndarray  # object, 10 digits
    households: Households

    @property
    def size(self) -> int:
        """Number of people."""
        return len(self.first_name)


def nhs_check_digit(first_nine: np.ndarray) -> np.ndarray:
    """Modulus-11 check digit of nine-digit NHS number stems; 10 marks a stem that has none.

    Examples
    --------
    >>> nhs_check_digit(np.array([943476591])).tolist()
    [9]
    """
    stems = np.asarray(first_nine, dtype=np.int64)
    digits = stems[:, None] // 10 ** np.arange(8, -1, -1) % 10
    check = 11 - (digits * _NHS_WEIGHTS).sum(axis=1) % 11
    return np.where(check == 11, 0, check)


def nhs_numbers(count: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``count`` distinct, valid ten-digit NHS numbers as strings.

    Examples
    --------
    >>> numbers = nhs_numbers(3, np.random.default_rng(0))
    >>> [len(n) for n in numbers], len(set(numbers))
    ([10, 10, 10], 3)
    """
    numbers = np.empty(0, dtype=np.int64)
    while len(numbers) < count:
        wanted = int((count - len(numbers)) * 1.2) + 16
        span = rng.integers(0, 300_000_000, size=wanted)
        stems = np.where(span < 100_000_000, 400_000_000 + span, 500_000_000 + span)
        check = nhs_check_digit(stems)
        drawn = (stems * 10 + check)[check < 10]
        numbers = np.concatenate([numbers, drawn])
        # Keep first occurrences in draw order so the result does not depend on sorting.
        _, first = np.unique(numbers, return_index=True)
        numbers = numbers[np.sort(first)]
    return numbers[:count].astype("U10").astype(object)


def _age_weights(*, low: int, high: int, peak: float, spread: float) -> np.ndarray:
    ages = np.arange(100)
    weights = np.exp(-0.5 * ((ages - peak) / spread) ** 2)
    weights[(ages < low) | (ages > high)] = 0.0
    return weights / weights.sum()


# Age of the first adult by household kind: older people often live alone, parents are 20-60.
_HEAD_AGE_P = {
    _SINGLE: 0.6 * _age_weights(low=18, high=99, peak=77, spread=10)
    + 0.4 * _age_weights(low=18, high=99, peak=40, spread=15),
    _COUPLE: _age_weights(low=19, high=97, peak=62, spread=16),
    _LONE_PARENT: _age_weights(low=19, high=65, peak=40, spread=9),
    _FAMILY: _age_weights(low=20, high=65, peak=44, spread=9),
    _SHARERS: _age_weights(low=18, high=60, peak=23, spread=6),
}
# Sons and daughters at home are up to 24; older ones have mostly left.
_OLDEST_CHILD = 24


def _household_kinds(size: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(len(size))
    pair = np.select([u < 0.72, u < 0.92], [_COUPLE, _LONE_PARENT], _SHARERS)
    larger = np.select([u < 0.79, u < 0.92], [_FAMILY, _LONE_PARENT], _SHARERS)
    # A house of seven is a family: no HMO licence register shows many of those.
    larger = np.where((size >= 7) & (larger == _SHARERS), _FAMILY, larger)
    return np.select([size == 1, size == 2], [_SINGLE, pair], larger)


def _household_sizes(people: int, rng: np.random.Generator) -> np.ndarray:
    sizes = np.empty(0, dtype=np.int64)
    while sizes.sum() < people:
        more = rng.choice(np.arange(1, 8), size=people // 2 + 8, p=_HOUSEHOLD_SIZE_P)
        sizes = np.concatenate([sizes, more])
    ends = np.cumsum(sizes)
    last = int(np.searchsorted(ends, people))  # first household that reaches the total
    sizes = sizes[: last + 1].copy()
    sizes[-1] -= int(ends[last]) - people
    return sizes


def _draw_ages(kind_of_person: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ages = np.zeros(len(kind_of_person), dtype=np.int64)
    for kind, p in _HEAD_AGE_P.items():
        at = np.flatnonzero(kind_of_person == kind)
        ages[at] = rng.choice(100, size=len(at), p=p)
    return ages


def _draw_names_by_sex(
    male: np.ndarray, era: np.ndarray, rng: np.random.Generator, lex: Lexicon
) -> np.ndarray:
    """Indices into the male or female first-name list, by each person's sex and birth era."""
    index = np.empty(len(male), dtype=np.int64)
    lists = ((True, lex.male_names, lex.male_p), (False, lex.female_names, lex.female_p))
    for e in range(len(ERAS)):
        for sex, names, p in lists:
            at = np.flatnonzero((male == sex) & (era == e))
            index[at] = rng.choice(len(names), size=len(at), p=p[e])
    return index


def _draw_first_names(
    *,
    male: np.ndarray,
    dob: np.ndarray,
    household: np.ndarray,
    rng: np.random.Generator,
    lex: Lexicon,
) -> np.ndarray:
    era = era_of_birth_year(ymd(dob)[0])
    index = _draw_names_by_sex(male, era, rng, lex)
    # Siblings (twins above all) differ by first name: redraw a name already used in the household.
    for _ in range(20):
        key = (household * 2 + male) * 1024 + index
        _, first = np.unique(key, return_index=True)
        repeat = np.ones(len(key), dtype=bool)
        repeat[first] = False
        if not repeat.any():
            break
        index[repeat] = _draw_names_by_sex(male[repeat], era[repeat], rng, lex)
    names = np.empty(len(male), dtype=object)
    names[male] = lex.male_names[index[male]]
    names[~male] = lex.female_names[index[~male]]
    return names


def _rank_within(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0-based position of each element among the elements of its group, in random order."""
    order = np.lexsort((rng.random(len(groups)), groups))
    ordered = groups[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(new)
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - starts[np.cumsum(new) - 1]
    return rank


def _streets(
    district: np.ndarray, rng: np.random.Generator, lex: Lexicon
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Street of each household, plus each street's name and district.

    A street name is used once per town, so that "12 Park Lane, Leeds" is one address; a big
    population gets longer streets once a town has used every name.
    """
    combos = np.array(
        [f"{stem} {kind}" for stem in lex.street_stems for kind in lex.street_types], dtype=object
    )
    combo_p = np.tile(lex.street_type_p, len(lex.street_stems))
    combo_p /= combo_p.sum()
    towns = np.array([d.town for d in lex.districts], dtype=object)
    per_district = np.bincount(district, minlength=len(lex.districts))
    names: list[np.ndarray] = []
    homes: list[np.ndarray] = []
    street = np.empty(len(district), dtype=np.int64)
    n_streets = 0
    for town in dict.fromkeys(towns):
        in_town = np.flatnonzero(towns == town)
        wanted = np.maximum(1, -(-per_district[in_town] // _HOUSEHOLDS_PER_STREET))
        wanted = np.maximum(1, wanted * min(1.0, len(combos) / wanted.sum())).astype(np.int64)
        total = int(wanted.sum())
        chosen = combos[rng.choice(len(combos), size=total, replace=total > len(combos), p=combo_p)]
        for d, count, town_names in zip(
            in_town, wanted, np.split(chosen, np.cumsum(wanted)[:-1]), strict=True
        ):
            length = rng.gamma(2.0, size=count)  # streets differ in length
            at = np.flatnonzero(district == d)
            street[at] = n_streets + rng.choice(count, size=len(at), p=length / length.sum())
            names.append(town_names)
            homes.append(np.full(count, d))
            n_streets += count
    return street, np.concatenate(names), np.concatenate(homes)


def _households(count: int, rng: np.random.Generator, lex: Lexicon) -> Households:
    districts = lex.districts
    weights = np.array([d.weight for d in districts])
    district = rng.choice(len(districts), size=count, p=weights / weights.sum())
    street, names_of_street, district_of_street = _streets(district, rng, lex)

    # Houses are numbered 1, 2, ... along a street; blocks of flats take the numbers after them.
    flat = rng.random(count) < _FLAT_RATE
    rank = _rank_within(street * 2 + flat, rng)
    houses = np.bincount(street[~flat], minlength=len(names_of_street))
    number = np.where(flat, houses[street] + 1 + rank // _FLATS_PER_BUILDING, rank + 1)
    flat_number = rank % _FLATS_PER_BUILDING + 1

    # A postcode unit covers a stretch of one street; each district hands out distinct units.
    unit_key = street * 100_000 + (number - 1) // _ADDRESSES_PER_POSTCODE
    units, unit = np.unique(unit_key, return_inverse=True)
    unit_district = district_of_street[units // 100_000]
    inward = np.empty(len(units), dtype=object)
    space = np.array(
        [f"{s}{a}{b}" for s in range(1, 10) for a in _INWARD_LETTERS for b in _INWARD_LETTERS],
        dtype=object,
    )
    for d in range(len(districts)):
        at = np.flatnonzero(unit_district == d)
        inward[at] = space[rng.choice(len(space), size=len(at), replace=len(at) > len(space))]
    outward = np.array([d.outward for d in districts], dtype=object)
    postcode = outward[district] + " " + inward[unit]

    town = np.array([d.town for d in districts], dtype=object)[district]
    line = names_of_street[street]
    address = np.array(
        [
            f"Flat {f}, {n} {s}, {t}" if is_flat else f"{n} {s}, {t}"
            for is_flat, f, n, s, t in zip(flat, flat_number, number, line, town, strict=True)
        ],
        dtype=object,
    )
    ward = np.array([d.ward_code for d in districts], dtype=object)[district]
    return Households(address=address, postcode=postcode, ward_code=ward)


def make_population(*, size: int, rng: np.random.Generator) -> Population:
    """Draw ``size`` people living in households of a made-up UK region.

    Parameters
    ----------
    size
        Number of people, at least 1.
    rng
        Source of randomness; the same state gives the same population.

    Returns
    -------
    Population
        True identities, without errors.

    Examples
    --------
    >>> people = make_population(size=1000, rng=np.random.default_rng(7))
    >>> people.size, len(people.households.address) < 1000
    (1000, True)
    """
    lex = load_lexicon()
    sizes = _household_sizes(size, rng)
    n_households = len(sizes)
    kind = _household_kinds(sizes, rng)
    n_adults = np.select(
        [kind == _SINGLE, kind == _LONE_PARENT, kind == _SHARERS], [1, 1, sizes], 2
    )

    household = np.repeat(np.arange(n_households), sizes)
    member = np.arange(size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    person_kind = kind[household]
    adult = member < n_adults[household]
    sharer = person_kind == _SHARERS

    # Ages: the head's from the household kind, a partner's close to it, children's below it.
    head_age = _draw_ages(kind, rng)
    own_age = _draw_ages(person_kind, rng)
    partner_age = np.clip(head_age[household] + np.rint(rng.normal(0, 3, size)), 18, 99)
    child_top = np.clip(head_age[household] - 18, 0, _OLDEST_CHILD)
    child_age = np.floor(rng.random(size) * (child_top + 1))
    age = np.select(
        [sharer, member == 0, adult], [own_age, head_age[household], partner_age], child_age
    ).astype(np.int64)
    dob = N_DAYS - 1 - np.floor(age * 365.2425).astype(np.int64) - rng.integers(0, 365, size)
    dob = np.clip(dob, 0, N_DAYS - 1)
    twin = (
        (member == n_adults[household] + 1)
        & ~adult
        & (rng.random(n_households) < _TWIN_RATE)[household]
    )
    dob[twin] = dob[np.flatnonzero(twin) - 1]  # the person before a twin is the first child

    # Sex: a partner is mostly of the other sex; everyone else is a coin toss.
    coin = rng.random(size) < 0.5
    head_male = coin[np.cumsum(sizes) - sizes][household]
    opposite = rng.random(size) < _OPPOSITE_SEX_PARTNER
    partner = (member == 1) & adult & ~sharer
    male = np.where(partner, np.where(opposite, ~head_male, head_male), coin)

    # Surnames: the household's, except sharers, some partners and some children.
    surname = rng.choice(len(lex.last_names), size=n_households, p=lex.last_p)
    own_surname = rng.choice(len(lex.last_names), size=size, p=lex.last_p)
    partner_surname = np.where(
        rng.random(n_households) < _PARTNER_OWN_SURNAME,
        rng.choice(len(lex.last_names), size=n_households, p=lex.last_p),
        surname,
    )
    absent_parent = rng.choice(len(lex.last_names), size=n_households, p=lex.last_p)
    other_surname = np.where(n_adults == 2, partner_surname, absent_parent)
    child_surname = np.where(
        rng.random(size) < _CHILD_OTHER_SURNAME, other_surname[household], surname[household]
    )
    last_index = np.select(
        [sharer, member == 0, adult],
        [own_surname, surname[household], partner_surname[household]],
        child_surname,
    )

    return Population(
        first_name=_draw_first_names(male=male, dob=dob, household=household, rng=rng, lex=lex),
        last_name=lex.last_names[last_index],
        male=male,
        dob=dob,
        household=household,
        nhs_number=nhs_numbers(size, rng),
        households=_households(n_households, rng, lex),
    )
