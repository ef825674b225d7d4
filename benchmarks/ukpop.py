"""An independent UK-like population for linkage benchmarks, with its own error model.

    .venv/bin/python benchmarks/ukpop.py OUT [--people 20000] [--partners 3]
                                             [--errors medium] [--seed 1]

Written without :mod:`oda_fed.synth` (neither its code nor its data), so that oda-fed is not
measured on data shaped by the generator it was tuned on. Names, streets, towns and postcodes come
from Faker's ``en_GB`` locale; people live in households (couples share a family name, children
their parents'); each partner holds an overlapping subset of the people (some are known to every
partner, some to a few, some to one), one record each, written in that partner's own formats.

Each record is a fresh copy of its person, spoiled independently with the probabilities of
:data:`RATES` (low / medium / high):

====================  ===========================================================  ====  ======  ====
error                 what happens to the record                                   low   medium  high
====================  ===========================================================  ====  ======  ====
``typo_first``        one typo in the given name (insert, delete, substitute,      0.02  0.05    0.10
                      transpose)
``typo_last``         one typo in the family name                                  0.02  0.05    0.10
``nickname``          the given name becomes a nickname (when the table has one)   0.03  0.06    0.10
``initial``           the given name becomes its initial                           0.01  0.02    0.04
``phonetic_first``    a sound-alike respelling of the given name (ph/f, ck/k,      0.02  0.04    0.08
                      ie/y, doubled or single letters...), when one applies
``phonetic_last``     the same for the family name                                 0.02  0.04    0.08
``married``           a married woman is recorded under her maiden name            0.15  0.25    0.35
``swapped``           given and family names swapped                               0.01  0.02    0.04
``day_month``         day and month of birth swapped (when the day is 1–12)        0.01  0.03    0.05
``year``              year of birth ±1, or its last two digits swapped             0.01  0.03    0.05
``moved``             an earlier address and postcode                              0.05  0.12    0.25
``typo_address``      one typo in the address                                      0.02  0.05    0.10
``typo_postcode``     one character of the postcode changed                        0.01  0.02    0.04
``missing_<field>``   the field is blank (each field on its own)                   0.01  0.03    0.06
====================  ===========================================================  ====  ======  ====

A year typo may make an impossible date (29 February of a year that is not a leap year); it is
kept, as real extracts have them. The writer of each partner varies formats, as partners do:
dates as ``1980-03-07``, ``07/03/1980`` or ``07-03-1980``; sex as ``F``, ``Female`` or ``f``;
names in title or upper case; postcodes with or without their space.

Files written into the output folder:

- ``<partner>.csv`` per partner: ``record_id`` and the project's fields (``first_name``,
  ``last_name``, ``date_of_birth``, ``sex``, ``address``, ``postcode``), rows shuffled;
- ``truth.csv``: ``record_id, source, person_id``;
- ``errors.csv``: ``source, record_id, errors`` (the error names applied, ``;``-separated);
- ``people.csv``: each person's true values (the ``person_id`` and the fields, ISO dates);
- ``project.toml``: the partners and the fields with their types, and nothing else, so every
  linkage setting is oda-fed's default.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tomli_w
from faker import Faker

#: The project's linkage fields and their types, in column order.
FIELDS: dict[str, str] = {
    "first_name": "name",
    "last_name": "name",
    "date_of_birth": "date_of_birth",
    "sex": "sex",
    "address": "address",
    "postcode": "postcode",
}

#: Partner ids, in order; a population with P partners uses the first P.
PARTNERS = ("council", "nhs_trust", "police", "housing", "schools")

ERROR_LEVELS = ("low", "medium", "high")

#: Probability of each error per record, by level (see the module docstring).
RATES: dict[str, dict[str, float]] = {
    "low": {
        "typo_first": 0.02, "typo_last": 0.02, "nickname": 0.03, "initial": 0.01,
        "phonetic_first": 0.02, "phonetic_last": 0.02, "married": 0.15, "swapped": 0.01,
        "day_month": 0.01, "year": 0.01, "moved": 0.05, "typo_address": 0.02,
        "typo_postcode": 0.01, "missing": 0.01,
    },
    "medium": {
        "typo_first": 0.05, "typo_last": 0.05, "nickname": 0.06, "initial": 0.02,
        "phonetic_first": 0.04, "phonetic_last": 0.04, "married": 0.25, "swapped": 0.02,
        "day_month": 0.03, "year": 0.03, "moved": 0.12, "typo_address": 0.05,
        "typo_postcode": 0.02, "missing": 0.03,
    },
    "high": {
        "typo_first": 0.10, "typo_last": 0.10, "nickname": 0.10, "initial": 0.04,
        "phonetic_first": 0.08, "phonetic_last": 0.08, "married": 0.35, "swapped": 0.04,
        "day_month": 0.05, "year": 0.05, "moved": 0.25, "typo_address": 0.10,
        "typo_postcode": 0.04, "missing": 0.06,
    },
}  # fmt: skip

#: Given names to the nicknames people are recorded under (data, not code: extend freely).
NICKNAMES: dict[str, tuple[str, ...]] = {
    "Alexander": ("Alex", "Sandy", "Xander"), "Alexandra": ("Alex", "Sandra", "Lexie"),
    "Abigail": ("Abbie", "Abby", "Gail"), "Andrew": ("Andy", "Drew"), "Anthony": ("Tony", "Ant"),
    "Benjamin": ("Ben", "Benny"), "Catherine": ("Cathy", "Kate", "Cath"),
    "Charles": ("Charlie", "Chas"), "Charlotte": ("Lottie", "Charlie"),
    "Christine": ("Chris", "Chrissie", "Tina"), "Christopher": ("Chris", "Kit"),
    "Daniel": ("Dan", "Danny"), "David": ("Dave", "Davy"), "Deborah": ("Debbie", "Debs"),
    "Donald": ("Don", "Donny"), "Edward": ("Ed", "Eddie", "Ted"),
    "Elizabeth": ("Liz", "Beth", "Lizzie", "Betty"), "Eleanor": ("Ellie", "Nell"),
    "Frederick": ("Fred", "Freddie"), "Geoffrey": ("Geoff",), "Gregory": ("Greg",),
    "Jacqueline": ("Jackie",), "James": ("Jim", "Jimmy", "Jamie"), "Jennifer": ("Jen", "Jenny"),
    "Jessica": ("Jess", "Jessie"), "John": ("Jack", "Johnny"), "Jonathan": ("Jon", "Jonny"),
    "Joseph": ("Joe", "Joey"), "Josephine": ("Jo", "Josie"), "Joshua": ("Josh",),
    "Kathleen": ("Kath", "Kathy"), "Katherine": ("Kate", "Katie", "Kathy"),
    "Kenneth": ("Ken", "Kenny"), "Lawrence": ("Larry", "Laurie"), "Leonard": ("Len", "Lenny"),
    "Margaret": ("Maggie", "Peggy", "Meg"), "Matthew": ("Matt",), "Michael": ("Mike", "Mick"),
    "Nicholas": ("Nick", "Nicky"), "Nicola": ("Nicky", "Nikki"), "Patricia": ("Pat", "Trish"),
    "Patrick": ("Pat", "Paddy"), "Peter": ("Pete",), "Philip": ("Phil",), "Phillip": ("Phil",),
    "Rebecca": ("Becky", "Becca"), "Richard": ("Rich", "Dick", "Richie"),
    "Robert": ("Rob", "Bob", "Bobby"), "Ronald": ("Ron", "Ronnie"), "Samantha": ("Sam", "Sammy"),
    "Samuel": ("Sam", "Sammy"), "Stephen": ("Steve",), "Steven": ("Steve",),
    "Susan": ("Sue", "Susie"), "Terence": ("Terry", "Tel"), "Thomas": ("Tom", "Tommy"),
    "Timothy": ("Tim", "Timmy"), "Victoria": ("Vicky", "Tori"), "William": ("Will", "Bill"),
    "Zoe": ("Zoey",), "Valerie": ("Val",), "Pamela": ("Pam",), "Judith": ("Judy",),
    "Gillian": ("Gill", "Jill"), "Barbara": ("Barbie", "Babs"), "Dorothy": ("Dot", "Dotty"),
    "Stanley": ("Stan",), "Raymond": ("Ray",), "Gerald": ("Gerry",), "Douglas": ("Doug",),
    "Francesca": ("Fran", "Frankie"), "Frances": ("Fran",), "Bernard": ("Bernie",),
}  # fmt: skip

#: Sound-alike respellings, each a regular expression and its replacement on lower case text.
PHONETIC: tuple[tuple[str, str], ...] = (
    ("ph", "f"), ("f", "ph"), ("ck", "k"), ("ie$", "y"), ("y$", "ie"), ("ey$", "y"),
    (r"([a-z])\1", r"\1"), (r"([aeiouy])([lnrst])([aeiouy])", r"\1\2\2\3"), ("c([aou])", r"k\1"),
    ("ei", "ie"), ("ie", "ei"), ("ou", "ow"), ("ai", "ay"), ("th", "t"), ("son$", "sen"),
    ("^mac", "mc"), ("^mc", "mac"), ("z", "s"), ("ae", "e"), ("ll$", "l"), ("wh", "w"),
)  # fmt: skip

_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y")
_SEX_WORDS = (("M", "F"), ("Male", "Female"), ("m", "f"))
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
# Household sizes 1..5 and their shares (roughly those of English households).
_HOUSEHOLD = (np.arange(1, 6), np.array([0.30, 0.34, 0.16, 0.14, 0.06]))


@dataclass
class _Person:
    first: str
    last: str
    maiden: str | None
    dob: dt.date
    sex: str
    address: tuple[str, str]
    earlier: tuple[str, str]


def make_population(
    folder: Path, *, people: int, partners: int = 3, errors: str = "medium", seed: int = 1
) -> Path:
    """Write ``people`` people held by ``partners`` partners, with errors, into ``folder``.

    Parameters
    ----------
    folder
        Where the files go (created; existing files of the same names are replaced).
    people
        Persons in the population; each partner holds a subset of them.
    partners
        Between 2 and 5 (:data:`PARTNERS`).
    errors
        ``"low"``, ``"medium"`` or ``"high"`` (:data:`RATES`).
    seed
        The same seed, sizes and level give the same files.

    Returns
    -------
    Path
        ``folder``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:  # doctest: +SKIP
    ...     sorted(p.name for p in make_population(Path(tmp), people=50).iterdir())
    ['council.csv', 'errors.csv', 'nhs_trust.csv', 'people.csv', 'police.csv', 'project.toml',
     'truth.csv']
    """
    if errors not in RATES:
        raise ValueError(f"errors must be one of {', '.join(ERROR_LEVELS)}, not {errors!r}")
    if not 2 <= partners <= len(PARTNERS):
        raise ValueError(f"partners must be 2 to {len(PARTNERS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    population = _people(people, rng=rng, fake=fake)
    _write_people(population, folder / "people.csv")
    ids = PARTNERS[:partners]
    holders = _holders(people, partners, rng=rng)
    truth, applied = [], []
    for p, partner in enumerate(ids):
        members = np.flatnonzero(holders[:, p])
        rng.shuffle(members)
        rows = []
        for n, person in enumerate(members):
            record_id = f"{partner[:3].upper()}{seed % 100:02d}{n:07d}"
            values, tags = _record(population[person], RATES[errors], rng=rng)
            rows.append([record_id, *_formatted(values, p)])
            truth.append((record_id, partner, f"P{person:07d}"))
            applied.append((partner, record_id, ";".join(tags)))
        _write_csv(folder / f"{partner}.csv", ["record_id", *FIELDS], rows)
    _write_csv(folder / "truth.csv", ["record_id", "source", "person_id"], truth)
    _write_csv(folder / "errors.csv", ["source", "record_id", "errors"], applied)
    (folder / "project.toml").write_text(tomli_w.dumps(project_document(ids, errors=errors)))
    return folder


def project_document(partners: tuple[str, ...], *, errors: str) -> dict:
    """The project: its partners and the fields with their types, every setting left default."""
    return {
        "version": 1,
        "name": "ukpop",
        "title": f"Independent UK-like population ({errors} errors)",
        "purpose": "benchmark",
        "legal_gateway": "synthetic benchmark data",
        "partners": [{"id": p, "name": p.replace("_", " ").title()} for p in partners],
        "linkage": {"fields": [{"name": n, "type": t} for n, t in FIELDS.items()]},
    }


def _people(count: int, *, rng: np.random.Generator, fake: Faker) -> list[_Person]:
    """``count`` persons in households: a couple sharing the family name, then children."""
    today = dt.date(2025, 1, 1)
    out: list[_Person] = []
    while len(out) < count:
        size = int(rng.choice(_HOUSEHOLD[0], p=_HOUSEHOLD[1]))
        home, family = _address(fake), fake.last_name()
        adult_age = int(rng.integers(18, 90))
        sexes = ["f", "m"] if rng.random() < 0.5 else ["m", "f"]
        for k in range(size):
            if k < 2:
                sex = sexes[k]
                age = max(18, adult_age + int(rng.integers(-6, 7)))
            else:
                sex = "f" if rng.random() < 0.49 else "m"
                age = int(rng.integers(0, max(1, min(adult_age - 17, 25))))
            first = fake.first_name_female() if sex == "f" else fake.first_name_male()
            # Half the women of a couple took the family name on marriage.
            maiden = fake.last_name() if (k < 2 and sex == "f" and rng.random() < 0.5) else None
            if size == 1 and sex == "f" and rng.random() < 0.3:
                maiden = fake.last_name()
            born = today - dt.timedelta(days=int(age * 365.25 + rng.integers(0, 365)))
            out.append(_Person(first, family, maiden, born, sex, home, _address(fake)))
    return out[:count]


def _address(fake: Faker) -> tuple[str, str]:
    """An address line with its town, and a postcode."""
    street = f"{fake.building_number()} {fake.street_name()}"
    if fake.random.random() < 0.15:
        street = f"Flat {fake.random.randint(1, 40)}, {street}"
    return f"{street}, {fake.city()}", fake.postcode()


def _holders(people: int, partners: int, *, rng: np.random.Generator) -> np.ndarray:
    """Which partners hold each person: 30 % one partner, 40 % every partner, the rest between."""
    counts = np.arange(1, partners + 1)
    weights = np.full(partners, 0.3 / max(partners - 2, 1))
    weights[0], weights[-1] = 0.3, 0.4
    if partners == 2:
        weights = np.array([0.4, 0.6])
    k = rng.choice(counts, size=people, p=weights / weights.sum())
    held = np.zeros((people, partners), dtype=bool)
    for i, n in enumerate(k):
        held[i, rng.choice(partners, size=n, replace=False)] = True
    return held


def _record(
    person: _Person, rates: dict[str, float], *, rng: np.random.Generator
) -> tuple[dict[str, str | dt.date | None], list[str]]:
    """One partner's copy of ``person`` and the names of the errors it carries."""
    tags: list[str] = []

    def hit(name: str) -> bool:
        if rng.random() < rates[name]:
            tags.append(name)
            return True
        return False

    first, last, (address, postcode) = person.first, person.last, person.address
    if person.maiden is not None and hit("married"):
        last = person.maiden
    if hit("moved"):
        address, postcode = person.earlier
    if person.first in NICKNAMES and hit("nickname"):
        first = str(rng.choice(NICKNAMES[person.first]))
    elif hit("initial"):
        first = first[0]
    first = _maybe(first, "phonetic_first", _phonetic, rates, rng, tags)
    last = _maybe(last, "phonetic_last", _phonetic, rates, rng, tags)
    first = _maybe(first, "typo_first", _typo, rates, rng, tags)
    last = _maybe(last, "typo_last", _typo, rates, rng, tags)
    address = _maybe(address, "typo_address", _typo, rates, rng, tags)
    postcode = _maybe(postcode, "typo_postcode", _postcode_typo, rates, rng, tags)
    if hit("swapped"):
        first, last = last, first
    y, m, d = person.dob.year, person.dob.month, person.dob.day
    if d <= 12 and d != m and hit("day_month"):
        m, d = d, m
    if hit("year"):
        swapped = y - y % 100 + (y % 10) * 10 + (y % 100) // 10
        y = swapped if swapped != y and rng.random() < 0.5 else y + int(rng.choice([-1, 1]))
    values: dict[str, str | dt.date | None] = {
        "first_name": first,
        "last_name": last,
        "date_of_birth": _date_or_text(y, m, d),
        "sex": person.sex,
        "address": address,
        "postcode": postcode,
    }
    for field in FIELDS:
        if rng.random() < rates["missing"]:
            values[field] = None
            tags.append(f"missing_{field}")
    return values, tags


def _maybe(
    value: str,
    name: str,
    change: Callable[[str, np.random.Generator], str],
    rates: dict[str, float],
    rng: np.random.Generator,
    tags: list[str],
) -> str:
    """``change(value)`` with probability ``rates[name]``, tagged when it changed anything."""
    if rng.random() >= rates[name]:
        return value
    changed = change(value, rng)
    if changed != value:
        tags.append(name)
    return changed


def _typo(text: str, rng: np.random.Generator) -> str:
    """One keyboard slip: a letter inserted, deleted, substituted, or two transposed."""
    if len(text) < 2:
        return text
    i = int(rng.integers(0, len(text) - 1))
    letter = _LETTERS[int(rng.integers(0, 26))]
    op = int(rng.integers(0, 4))
    if op == 0:
        return text[:i] + letter + text[i:]
    if op == 1:
        return text[:i] + text[i + 1 :]
    if op == 2:
        return text[:i] + letter + text[i + 1 :]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def _phonetic(name: str, rng: np.random.Generator) -> str:
    """A sound-alike spelling of ``name`` by one applicable rule of :data:`PHONETIC`."""
    lower = name.lower()
    rules = [(p, r) for p, r in PHONETIC if re.search(p, lower)]
    if not rules:
        return name
    pattern, replacement = rules[int(rng.integers(0, len(rules)))]
    respelt = re.sub(pattern, replacement, lower, count=1)
    return respelt.title() if name[:1].isupper() else respelt


def _postcode_typo(postcode: str, rng: np.random.Generator) -> str:
    """One character of the postcode replaced by another of its kind (digit or letter)."""
    positions = [i for i, c in enumerate(postcode) if c.isalnum()]
    i = positions[int(rng.integers(0, len(positions)))]
    pool = "0123456789" if postcode[i].isdigit() else _LETTERS.upper()
    return postcode[:i] + pool[int(rng.integers(0, len(pool)))] + postcode[i + 1 :]


def _date_or_text(y: int, m: int, d: int) -> dt.date | str:
    """The date, or ``YYYY-MM-DD`` text when a year typo made it impossible."""
    try:
        return dt.date(y, m, d)
    except ValueError:
        return f"{y:04d}-{m:02d}-{d:02d}"


def _formatted(values: dict[str, str | dt.date | None], partner: int) -> list[str]:
    """A record's values as partner number ``partner`` writes them."""
    out = []
    fmt = _DATE_FORMATS[partner % len(_DATE_FORMATS)]
    upper = partner % 2 == 1
    for field in FIELDS:
        value = values[field]
        if value is None:
            out.append("")
        elif field == "date_of_birth":
            out.append(_write_date(value, fmt))
        elif field == "sex":
            out.append(_SEX_WORDS[partner % len(_SEX_WORDS)][value == "f"])
        elif field == "postcode":
            out.append(str(value).replace(" ", "").lower() if upper else str(value))
        else:
            out.append(str(value).upper() if upper else str(value))
    return out


def _write_date(value: str | dt.date, fmt: str) -> str:
    if isinstance(value, dt.date):
        return value.strftime(fmt)
    y, m, d = value.split("-")  # an impossible date, written in the same layout
    return fmt.replace("%Y", y).replace("%m", m).replace("%d", d)


def _write_people(population: list[_Person], path: Path) -> None:
    rows = [
        [f"P{i:07d}", p.first, p.last, p.dob.isoformat(), p.sex, *p.address]
        for i, p in enumerate(population)
    ]
    _write_csv(path, ["person_id", *FIELDS], rows)


def _write_csv(path: Path, header: list[str], rows: list) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--partners", type=int, default=3)
    parser.add_argument("--errors", default="medium", choices=ERROR_LEVELS)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    folder = make_population(
        args.out, people=args.people, partners=args.partners, errors=args.errors, seed=args.seed
    )
    for partner in PARTNERS[: args.partners]:
        records = sum(1 for _ in (folder / f"{partner}.csv").open()) - 1
        print(f"{partner}: {records:,} records")
    print(f"written to {folder}")


if __name__ == "__main__":
    main()
