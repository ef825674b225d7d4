"""Split a synthetic population across partners, add errors, and write CSV extracts with truth."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
from numpy.dtypes import StringDType

from oda_fed.errors import OdaFedError
from oda_fed.synth.corruption import RATES, ErrorLevel, Records, corrupt
from oda_fed.synth.dates import format_days
from oda_fed.synth.population import Population, make_population
from oda_fed.synth.profiles import CANONICAL_FIELDS, PROFILES, STYLES, PartnerProfile

__all__ = [
    "Simulation",
    "SynthParameterError",
    "Synthetic",
    "error_level",
    "generate",
    "simulate",
    "write",
]

TRUTH_COLUMNS: tuple[str, ...] = ("source", "record_id", "person_id")


class SynthParameterError(OdaFedError, ValueError):
    """A synthetic population was asked for with impossible parameters."""

    exit_code = 2


@dataclass(frozen=True)
class Synthetic:
    """Partner extracts of one synthetic region and the truth that links them.

    Attributes
    ----------
    partners
        Partner id to its records, in its own column names; every column has ``str`` dtype and
        a blank is an empty string.
    truth
        One row per record of every partner: ``source`` (partner id), ``record_id``,
        ``person_id``.
    profiles
        The profiles used, in order.
    """

    partners: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    profiles: tuple[PartnerProfile, ...]


@dataclass(frozen=True)
class Simulation:
    """A :class:`Synthetic` with what produced it, for tests and benchmarks.

    Attributes
    ----------
    synthetic
        What :func:`generate` returns.
    population
        True identities, indexed by person number (``person_id`` is ``"person_"`` plus it).
    members
        Partner id to the person number of each of its rows, in row order.
    hits
        Partner id to error kind to the mask of its rows that the error changed.
    """

    synthetic: Synthetic
    population: Population
    members: dict[str, np.ndarray]
    hits: dict[str, dict[str, np.ndarray]]


def error_level(value: str) -> ErrorLevel:
    """Return ``value`` as an :data:`ErrorLevel`, checked, so a typo fails before any work starts.

    Raises
    ------
    SynthParameterError
        When ``value`` is not ``"low"``, ``"medium"`` or ``"high"``; the message lists them.

    Examples
    --------
    >>> error_level("high")
    'high'
    """
    if value not in RATES:
        raise SynthParameterError(f"errors must be one of {', '.join(RATES)}, got {value!r}")
    return cast(ErrorLevel, value)


def _check(*, population: int, partners: int, seed: int, errors: str) -> None:
    def is_int(value: object) -> bool:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)

    if not is_int(population) or population < 1:
        raise SynthParameterError(
            f"population must be a whole number of at least 1, got {population!r}"
        )
    if not is_int(partners) or not 2 <= partners <= len(PROFILES):
        raise SynthParameterError(
            f"partners must be a whole number from 2 to {len(PROFILES)}, got {partners!r}"
        )
    if not is_int(seed) or seed < 0:
        raise SynthParameterError(f"seed must be a whole number of at least 0, got {seed!r}")
    error_level(errors)


def _restyle(values: np.ndarray, change: Callable[[str], str]) -> np.ndarray:
    """Apply ``change`` once per distinct value: names repeat, so this is far cheaper than a map."""
    cache: dict[str, str] = {}
    out = [cache[v] if v in cache else cache.setdefault(v, change(v)) for v in values]
    return np.array(out, dtype=object)


def _ascii(text: str) -> str:
    if text.isascii():  # nearly every value: skip the costly decomposition
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _format(records: Records, profile: PartnerProfile) -> dict[str, np.ndarray]:
    """Canonical field to the strings this partner writes."""
    style = STYLES[profile.id]
    first, last, address = records.first_name, records.last_name, records.address
    if style.ascii_only:
        first, last, address = (_restyle(v, _ascii) for v in (first, last, address))
    if style.name_case == "upper":
        first, last = (_restyle(v, str.upper) for v in (first, last))

    dob = format_days(records.dob, profile.date_format).copy()
    dob[records.dob_missing] = ""
    female_label, male_label = style.sex_labels
    sex = np.where(records.male, male_label, female_label).astype(object)
    sex[records.sex_missing] = ""

    postcode = records.postcode
    if style.postcode_style == "compact":
        postcode = _restyle(postcode, lambda p: p.replace(" ", ""))
    elif style.postcode_style == "lower":
        postcode = _restyle(postcode, str.lower)

    values = {
        "first_name": first,
        "last_name": last,
        "date_of_birth": dob,
        "sex": sex,
        "address": address,
        "postcode": postcode,
    }
    if records.nhs_number is not None:
        nhs = records.nhs_number
        if style.nhs_style == "spaced":
            nhs = np.array([f"{n[:3]} {n[3:6]} {n[6:]}" if n else n for n in nhs], dtype=object)
        values["nhs_number"] = nhs
    return values


def _record_ids(count: int, prefix: str, rng: np.random.Generator) -> np.ndarray:
    """Distinct ids drawn sparsely from a range three times the count, like a live system's."""
    space = max(1000, 3 * count)
    width = max(6, len(str(space)))
    numbers = np.sort(rng.choice(space, size=count, replace=False) + 1)
    return _labels(prefix, numbers, width)


def _person_ids(population: int) -> np.ndarray:
    return _labels("person_", np.arange(population), max(7, len(str(population - 1))))


def _labels(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """``prefix`` plus zero-padded numbers, with numpy's string kernels rather than a loop."""
    digits = np.strings.zfill(numbers.astype(StringDType()), width)
    return np.strings.add(prefix, digits).astype(object)


def _extract(
    *,
    profile: PartnerProfile,
    seed: np.random.SeedSequence,
    people: Population,
    errors: ErrorLevel,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    """One partner's records, the person behind each row, and the errors each row got."""
    style = STYLES[profile.id]
    membership, ids, error_seed = seed.spawn(3)
    known = np.random.default_rng(membership).random(people.size) < style.coverage
    # Rows come out sorted by record id, and record ids are drawn at random: the row order says
    # nothing about the person.
    id_rng = np.random.default_rng(ids)
    rows = np.flatnonzero(known)
    rows = rows[id_rng.permutation(len(rows))]
    record_ids = _record_ids(len(rows), style.record_prefix, id_rng)
    home = people.household[rows]
    true = Records(
        first_name=people.first_name[rows],
        last_name=people.last_name[rows],
        dob=people.dob[rows],
        male=people.male[rows],
        address=people.households.address[home],
        postcode=people.households.postcode[home],
        ward_code=people.households.ward_code[home],
        nhs_number=people.nhs_number[rows] if "nhs_number" in profile.columns else None,
        dob_missing=np.zeros(len(rows), dtype=bool),
        sex_missing=np.zeros(len(rows), dtype=bool),
    )
    noisy, hits = corrupt(true, rates=RATES[errors], seed=error_seed, households=people.households)
    values = _format(noisy, profile)
    data = {profile.record_id_column: record_ids}
    data.update({profile.columns[f]: values[f] for f in CANONICAL_FIELDS if f in values})
    # The ward follows the address the record holds, moved or not, as a council gazetteer would.
    attributes = {"ward": noisy.ward_code}
    data.update({column: attributes[name] for name, column in profile.attributes.items()})
    return pd.DataFrame(data, dtype="str"), rows, hits


def simulate(
    *, population: int, partners: int, seed: int = 0, errors: ErrorLevel = "medium"
) -> Simulation:
    """Generate a synthetic region and keep the true population and the errors applied.

    Takes the same arguments as :func:`generate`, which returns ``simulate(...).synthetic``.

    Examples
    --------
    >>> sim = simulate(population=300, partners=2, seed=1)
    >>> rows = sim.members["council"]
    >>> len(rows) == len(sim.synthetic.partners["council"])
    True
    """
    _check(population=population, partners=partners, seed=seed, errors=errors)
    # One independent stream per use, so that the people do not depend on the number of partners
    # or the error level, nor a partner's membership on the error level.
    streams = np.random.SeedSequence(seed).spawn(1 + len(PROFILES))
    people = make_population(size=population, rng=np.random.default_rng(streams[0]))
    person_ids = _person_ids(population)
    profiles = PROFILES[:partners]

    frames: dict[str, pd.DataFrame] = {}
    truths: list[pd.DataFrame] = []
    members: dict[str, np.ndarray] = {}
    hits: dict[str, dict[str, np.ndarray]] = {}
    for profile, stream in zip(profiles, streams[1:], strict=False):
        frame, rows, hit = _extract(profile=profile, seed=stream, people=people, errors=errors)
        frames[profile.id] = frame
        source = np.full(len(rows), profile.id, dtype=object)
        truth_columns = (source, frame[profile.record_id_column].to_numpy(), person_ids[rows])
        truths.append(
            pd.DataFrame(dict(zip(TRUTH_COLUMNS, truth_columns, strict=True)), dtype="str")
        )
        members[profile.id] = rows
        hits[profile.id] = hit

    truth = pd.concat(truths, ignore_index=True)
    synthetic = Synthetic(partners=frames, truth=truth, profiles=profiles)
    return Simulation(synthetic=synthetic, population=people, members=members, hits=hits)


def generate(
    *, population: int, partners: int, seed: int = 0, errors: ErrorLevel = "medium"
) -> Synthetic:
    """Generate synthetic partner extracts of one UK-like region, with errors and ground truth.

    Parameters
    ----------
    population
        Number of people living in the region (at least 1). Each partner knows a share of them.
    partners
        Number of partners, from 2 to ``len(PROFILES)``; the first ``partners`` profiles are used.
    seed
        Seed (at least 0); the same arguments always give the same data.
    errors
        Error level: ``"low"``, ``"medium"`` (default; realistic and still linkable) or ``"high"``.

    Returns
    -------
    Synthetic
        Partner id to its records, the truth table and the profiles used.

    Raises
    ------
    SynthParameterError
        A ``ValueError`` (and an :class:`~oda_fed.errors.OdaFedError`) for impossible arguments.

    Examples
    --------
    >>> data = generate(population=1000, partners=3, seed=42)
    >>> list(data.partners)
    ['council', 'police', 'social_care']
    >>> list(data.partners["police"].columns)[:3]
    ['nominal_id', 'first_names', 'family_name']
    >>> len(data.truth) == sum(len(df) for df in data.partners.values())
    True
    """
    return simulate(population=population, partners=partners, seed=seed, errors=errors).synthetic


def write(synthetic: Synthetic, out_dir: Path) -> list[Path]:
    """Write ``<partner id>.csv`` per partner and ``truth.csv`` into ``out_dir``.

    Files are UTF-8 with ``\\n`` line ends, so the same data always gives the same bytes. A blank
    is an empty field: read the files back with ``keep_default_na=False, dtype=str``.

    Parameters
    ----------
    synthetic
        What :func:`generate` returned.
    out_dir
        Folder to write to; created if missing. Existing files of the same names are replaced.

    Returns
    -------
    list[Path]
        The partner files in profile order, then ``truth.csv``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     [p.name for p in write(generate(population=50, partners=2), Path(tmp))]
    ['council.csv', 'police.csv', 'truth.csv']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    tables = [(p.id, synthetic.partners[p.id]) for p in synthetic.profiles]
    for name, table in [*tables, ("truth", synthetic.truth)]:
        path = out_dir / f"{name}.csv"
        table.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
        paths.append(path)
    return paths
