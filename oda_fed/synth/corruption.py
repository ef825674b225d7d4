"""Realistic errors in partner records: typos, nicknames, swaps, moves, date slips, blanks.

Each kind of error hits a record independently with a rate set by the error level. Every kind draws
from its own random stream, and decides which records it hits before anything else, so that with
one seed the records hit at ``low`` are also hit at ``medium`` and ``high``: raising the level only
adds errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Literal

import numpy as np

from oda_fed.synth import dates
from oda_fed.synth.lexicon import load_lexicon
from oda_fed.synth.population import Households

__all__ = [
    "ERROR_KINDS",
    "LINKAGE_ERROR_KINDS",
    "RATES",
    "ErrorLevel",
    "ErrorRates",
    "Records",
    "corrupt",
    "heavy_errors",
]

ErrorLevel = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class ErrorRates:
    """Probability that one record gets each kind of error.

    Name, typo and missing rates apply per field. ``date_swap`` applies to dates whose day and
    month can be swapped (both at most 12); ``nhs_missing`` to partners that hold NHS numbers.
    """

    moved: float
    name_swap: float
    nickname: float
    initial: float
    first_name_typo: float
    last_name_typo: float
    first_name_transposition: float
    last_name_transposition: float
    address_typo: float
    postcode_typo: float
    date_swap: float
    date_typo: float
    sex_flip: float
    first_name_missing: float
    last_name_missing: float
    date_of_birth_missing: float
    sex_missing: float
    address_missing: float
    postcode_missing: float
    nhs_missing: float


# Medium is "a few percent per kind" while keeping heavy errors (moves, name swaps and records with
# two or more errors in linkage fields) near 3% of records, so a good CLK linkage still reaches
# precision and recall of 0.95.
_MEDIUM = ErrorRates(
    moved=0.015,
    name_swap=0.005,
    nickname=0.04,
    initial=0.008,
    first_name_typo=0.02,
    last_name_typo=0.02,
    first_name_transposition=0.008,
    last_name_transposition=0.008,
    address_typo=0.02,
    postcode_typo=0.01,
    date_swap=0.02,
    date_typo=0.012,
    sex_flip=0.003,
    first_name_missing=0.004,
    last_name_missing=0.003,
    date_of_birth_missing=0.008,
    sex_missing=0.01,
    address_missing=0.01,
    postcode_missing=0.012,
    nhs_missing=0.03,
)
# NHS numbers are missing for some records whatever the level: not everyone gave one.
_NHS_MISSING_BASE = 0.06


def _scaled(factor: float) -> ErrorRates:
    scaled = {f.name: min(0.5, getattr(_MEDIUM, f.name) * factor) for f in fields(ErrorRates)}
    scaled["nhs_missing"] += _NHS_MISSING_BASE
    return ErrorRates(**scaled)


#: Error rates by level; each rate grows from ``low`` to ``high``.
RATES: Mapping[ErrorLevel, ErrorRates] = MappingProxyType(
    {"low": _scaled(0.3), "medium": _scaled(1.0), "high": _scaled(3.0)}
)
#: Every kind of error; each draws from its own random stream, so their order never matters.
ERROR_KINDS: tuple[str, ...] = tuple(f.name for f in fields(ErrorRates))
#: Kinds that touch a field a linkage compares (names, date of birth, sex, postcode).
LINKAGE_ERROR_KINDS: frozenset[str] = frozenset(ERROR_KINDS) - {
    "address_typo",
    "address_missing",
    "nhs_missing",
}


@dataclass
class Records:
    """One partner's records before formatting; empty strings and ``*_missing`` masks are blanks."""

    first_name: np.ndarray  # object
    last_name: np.ndarray  # object
    dob: np.ndarray  # int64 day number
    male: np.ndarray  # bool
    address: np.ndarray  # object
    postcode: np.ndarray  # object, "LS6 2AB"
    ward_code: np.ndarray  # object
    nhs_number: np.ndarray | None  # object, or None where the partner holds none
    dob_missing: np.ndarray  # bool
    sex_missing: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.first_name)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


def _typo(text: str, op: int, where: float, letter: int) -> str:
    """Substitute (op 0), insert (op 1) or delete (op 2) one character, rarely the first one."""
    if not text:
        return text
    # Clerks get the first letter right far more often than the rest.
    i = 1 + min(int(where * (len(text) - 1)), len(text) - 2) if len(text) > 1 else 0
    new = _LETTERS[letter]
    if op == 1:
        # Half of insertions double a letter ("Smitth"), the others add a stray one.
        return text[:i] + (text[i].lower() if letter % 2 else new) + text[i:]
    if op == 2 and len(text) > 2:
        return text[:i] + text[i + 1 :]
    if new == text[i].lower():
        new = _LETTERS[(letter + 1) % 26]
    return text[:i] + (new.upper() if text[i].isupper() else new) + text[i + 1 :]


def _transpose(text: str, where: float) -> str:
    """Swap two adjacent different characters ("Jnoes"); unchanged when all characters agree."""
    pairs = [i for i in range(len(text) - 1) if text[i] != text[i + 1]]
    if not pairs:
        return text
    i = pairs[min(int(where * len(pairs)), len(pairs) - 1)]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def _postcode_typo(postcode: str, where: float, letter: int) -> str:
    """Swap the two inward letters or mistype one, keeping a valid postcode shape."""
    head, tail = postcode[:-2], postcode[-2:]
    if where < 0.5 and tail[0] != tail[1]:
        return head + tail[1] + tail[0]
    at = 0 if where < 0.75 else 1
    new = _INWARD_LETTERS[letter % len(_INWARD_LETTERS)]
    if new == tail[at]:
        new = _INWARD_LETTERS[(letter + 1) % len(_INWARD_LETTERS)]
    return head + (new + tail[1] if at == 0 else tail[0] + new)


def _apply_text(
    values: np.ndarray, hit: np.ndarray, rng: np.random.Generator, kind: str
) -> np.ndarray:
    """Apply a string error to the hit records; returns the mask of values that changed."""
    at = np.flatnonzero(hit)
    ops = rng.integers(0, 3, len(at))
    where = rng.random(len(at))
    letters = rng.integers(0, 26, len(at))
    changed = np.zeros(len(values), dtype=bool)
    for j, i in enumerate(at):
        old = values[i]
        if kind == "typo":
            new = _typo(old, int(ops[j]), float(where[j]), int(letters[j]))
        elif kind == "transposition":
            new = _transpose(old, float(where[j]))
        else:
            new = _postcode_typo(old, float(where[j]), int(letters[j])) if old else old
        values[i] = new
        changed[i] = new != old
    return changed


def _nicknames(first: np.ndarray, hit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    table = load_lexicon().nicknames
    at = np.flatnonzero(hit)
    picks = rng.random(len(at))
    changed = np.zeros(len(first), dtype=bool)
    for j, i in enumerate(at):
        forms = table.get(first[i])
        if forms:
            first[i] = forms[min(int(picks[j] * len(forms)), len(forms) - 1)]
            changed[i] = True
    return changed


def _blank(values: np.ndarray, hit: np.ndarray) -> np.ndarray:
    changed = hit & (values != "")
    values[hit] = ""
    return changed


def corrupt(
    records: Records,
    *,
    rates: ErrorRates,
    seed: np.random.SeedSequence,
    households: Households,
) -> tuple[Records, dict[str, np.ndarray]]:
    """Return a copy of ``records`` with errors, and per kind the mask of records it changed.

    Parameters
    ----------
    records
        True values of one partner's records.
    rates
        Error rates, usually ``RATES[level]``.
    seed
        Seed of this partner's error streams; one child stream per kind of error.
    households
        Addresses a record can move to.

    Examples
    --------
    >>> from oda_fed.synth.population import make_population
    >>> people = make_population(size=500, rng=np.random.default_rng(1))
    >>> true = Records(
    ...     first_name=people.first_name.copy(), last_name=people.last_name.copy(),
    ...     dob=people.dob.copy(), male=people.male.copy(),
    ...     address=people.households.address[people.household],
    ...     postcode=people.households.postcode[people.household],
    ...     ward_code=people.households.ward_code[people.household], nhs_number=None,
    ...     dob_missing=np.zeros(500, bool), sex_missing=np.zeros(500, bool))
    >>> noisy, hits = corrupt(true, rates=RATES["high"], seed=np.random.SeedSequence(2),
    ...                       households=people.households)
    >>> bool(hits["last_name_typo"].any()), bool((noisy.last_name != true.last_name).any())
    (True, True)
    """
    n = len(records)
    out = replace(
        records,
        **{
            name: (value.copy() if isinstance(value, np.ndarray) else value)
            for name, value in vars(records).items()
        },
    )
    streams = dict(
        zip(
            ERROR_KINDS,
            (np.random.default_rng(s) for s in seed.spawn(len(ERROR_KINDS))),
            strict=True,
        )
    )

    def draw(kind: str) -> tuple[np.ndarray, np.random.Generator]:
        rng = streams[kind]
        # Decide the hits first, from a draw whose size never depends on the level.
        return rng.random(n) < getattr(rates, kind), rng

    hits: dict[str, np.ndarray] = {}

    hit, rng = draw("moved")
    home = rng.integers(0, len(households.address), n)[hit]
    out.address[hit] = households.address[home]
    out.postcode[hit] = households.postcode[home]
    out.ward_code[hit] = households.ward_code[home]
    hits["moved"] = hit & (out.postcode != records.postcode)

    hit, _ = draw("name_swap")
    out.first_name[hit], out.last_name[hit] = out.last_name[hit], out.first_name[hit]
    hits["name_swap"] = hit & (out.first_name != out.last_name)

    hit, rng = draw("nickname")
    hits["nickname"] = _nicknames(out.first_name, hit, rng)

    hit, _ = draw("initial")
    before = out.first_name[hit]
    out.first_name[hit] = np.array([name[:1] for name in before], dtype=object)
    hits["initial"] = np.zeros(n, dtype=bool)
    hits["initial"][hit] = out.first_name[hit] != before

    for field in ("first_name", "last_name"):
        hit, rng = draw(f"{field}_typo")
        hits[f"{field}_typo"] = _apply_text(getattr(out, field), hit, rng, "typo")
        hit, rng = draw(f"{field}_transposition")
        hits[f"{field}_transposition"] = _apply_text(getattr(out, field), hit, rng, "transposition")

    hit, rng = draw("address_typo")
    hits["address_typo"] = _apply_text(out.address, hit, rng, "typo")
    hit, rng = draw("postcode_typo")
    hits["postcode_typo"] = _apply_text(out.postcode, hit, rng, "postcode")

    hit, _ = draw("date_swap")
    at = np.flatnonzero(hit)
    swapped, can = dates.swap_day_month(out.dob[at])
    out.dob[at] = swapped
    hits["date_swap"] = np.zeros(n, dtype=bool)
    hits["date_swap"][at] = can

    hit, rng = draw("date_typo")
    at = np.flatnonzero(hit)
    in_day = rng.random(len(at)) < 0.5
    out.dob[at[in_day]] = dates.day_typo(out.dob[at[in_day]], rng)
    out.dob[at[~in_day]] = dates.year_typo(out.dob[at[~in_day]], rng)
    hits["date_typo"] = hit

    hit, _ = draw("sex_flip")
    out.male = out.male ^ hit
    hits["sex_flip"] = hit

    for field in ("first_name", "last_name", "address", "postcode"):
        hit, _ = draw(f"{field}_missing")
        hits[f"{field}_missing"] = _blank(getattr(out, field), hit)
    hit, _ = draw("date_of_birth_missing")
    hits["date_of_birth_missing"] = hit & ~out.dob_missing
    out.dob_missing = out.dob_missing | hit
    hit, _ = draw("sex_missing")
    hits["sex_missing"] = hit & ~out.sex_missing
    out.sex_missing = out.sex_missing | hit
    hit, _ = draw("nhs_missing")
    if out.nhs_number is not None:
        hits["nhs_missing"] = _blank(out.nhs_number, hit)
    else:
        hits["nhs_missing"] = np.zeros(n, dtype=bool)
    return out, hits


def heavy_errors(hits: Mapping[str, np.ndarray]) -> np.ndarray:
    """Records a linkage will struggle with: moved, names swapped, or two linkage-field errors.

    Examples
    --------
    >>> heavy_errors({"moved": np.array([True, False]), "sex_flip": np.array([False, True])})
    array([ True, False])
    """
    masks = [np.asarray(mask) for kind, mask in hits.items() if kind in LINKAGE_ERROR_KINDS]
    count = np.sum(masks, axis=0)
    heavy = count >= 2
    for kind in ("moved", "name_swap"):
        if kind in hits:
            heavy = heavy | hits[kind]
    return heavy
