"""The embedded word lists a synthetic region is drawn from (``oda_fed/synth/data/*.txt``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

import numpy as np

__all__ = ["ERAS", "District", "Lexicon", "era_of_birth_year", "load_lexicon"]

#: Eras of first-name fashion: born before 1960, 1960-1994, 1995 on.
ERAS: tuple[str, ...] = ("old", "mid", "new")
_ERA_STARTS = np.array([1960, 1995])
# Names out of fashion are still given, just far less often ("Ethel" born 2007 exists, rarely).
_OUT_OF_ERA = 0.05


def era_of_birth_year(year: np.ndarray) -> np.ndarray:
    """Index into ``ERAS`` for each birth year.

    Examples
    --------
    >>> era_of_birth_year(np.array([1950, 1960, 2001])).tolist()
    [0, 1, 2]
    """
    return np.searchsorted(_ERA_STARTS, np.asarray(year), side="right")


@dataclass(frozen=True)
class District:
    """A postcode district of the made-up region and the ward it lies in."""

    outward: str
    town: str
    ward_code: str
    ward_name: str
    weight: float


@dataclass(frozen=True)
class Lexicon:
    """Frequency-weighted word lists; ``*_p`` arrays are probabilities that sum to 1.

    First-name probabilities have one row per era in ``ERAS``.

    Examples
    --------
    >>> lex = load_lexicon()
    >>> "O'Brien" in set(lex.last_names)
    True
    """

    female_names: np.ndarray
    female_p: np.ndarray
    male_names: np.ndarray
    male_p: np.ndarray
    last_names: np.ndarray
    last_p: np.ndarray
    nicknames: Mapping[str, tuple[str, ...]]
    street_stems: tuple[str, ...]
    street_types: tuple[str, ...]
    street_type_p: np.ndarray
    districts: tuple[District, ...]


def _lines(name: str) -> list[list[str]]:
    text = resources.files("oda_fed.synth").joinpath("data", name).read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    if not rows:
        raise RuntimeError(f"synth data file {name} is empty")
    return rows


def _weighted(name: str) -> tuple[np.ndarray, np.ndarray]:
    rows = _lines(name)
    words = np.array([row[0] for row in rows], dtype=object)
    weights = np.array([float(row[1]) for row in rows])
    if len(set(words)) != len(words):
        raise RuntimeError(f"synth data file {name} repeats a word")
    return _frozen(words), _frozen(weights / weights.sum())


def _by_era(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Words, and one row of probabilities per era in ``ERAS``."""
    words, _ = _weighted(name)
    rows = _lines(name)
    weights = np.array([float(row[1]) for row in rows])
    eras = np.array([row[2] for row in rows])
    unknown = set(eras) - {*ERAS, "all"}
    if unknown:
        raise RuntimeError(f"synth data file {name} has unknown eras {sorted(unknown)}")
    in_era = np.array([(eras == era) | (eras == "all") for era in ERAS])
    p = weights * np.where(in_era, 1.0, _OUT_OF_ERA)
    return words, _frozen(p / p.sum(axis=1, keepdims=True))


def _frozen(array: np.ndarray) -> np.ndarray:
    # The lexicon is cached and shared, so its arrays must not be changed by a caller.
    array.flags.writeable = False
    return array


@functools.cache
def load_lexicon() -> Lexicon:
    """Read and cache the packaged word lists.

    Returns
    -------
    Lexicon
        Names, nicknames, street parts and postcode districts.

    Examples
    --------
    >>> load_lexicon().districts[0].outward
    'LS1'
    """
    female, female_p = _by_era("first_names_female.txt")
    male, male_p = _by_era("first_names_male.txt")
    last, last_p = _weighted("last_names.txt")
    types, type_p = _weighted("street_types.txt")
    nicknames = {row[0]: tuple(row[1].split(",")) for row in _lines("nicknames.txt")}
    districts = tuple(
        District(
            outward=row[0], town=row[1], ward_code=row[2], ward_name=row[3], weight=float(row[4])
        )
        for row in _lines("districts.txt")
    )
    return Lexicon(
        female_names=female,
        female_p=female_p,
        male_names=male,
        male_p=male_p,
        last_names=last,
        last_p=last_p,
        nicknames=MappingProxyType(nicknames),
        street_stems=tuple(row[0] for row in _lines("street_names.txt")),
        street_types=tuple(types),
        street_type_p=type_p,
        districts=districts,
    )
