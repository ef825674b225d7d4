"""Synthetic event tables: each partner's incidents, referrals or complaints about its own records.

An event table holds many rows per person (a record id of the partner's extract, a date and a
type), as a case-management system exports them; a node derives attributes from it (a count in a
window, any event of a type) and the table itself never leaves the node. People differ in how much
they come to services' notice, and the same people tend to come to several: each person has one
hidden level of need, drawn once, that scales their events at every partner. The same seed gives
the same tables, and cutting the history at an earlier date (``until``) gives exactly the events
of the full history dated up to then, with the same event ids, as an earlier extract would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from oda_fed.synth.generator import Synthetic, SynthParameterError
from oda_fed.synth.profiles import PROFILES

__all__ = ["END", "EVENT_PROFILES", "EventProfile", "event_file", "make_events", "write_events"]

#: The last day of the default history (events are dated up to and including it).
END = dt.date(2026, 4, 1)

# The event tables' own random streams, apart from those of the people and extracts, so that
# adding event tables changes nothing the generator made before.
_STREAM = 1000


@dataclass(frozen=True)
class EventProfile:
    """Layout and habits of one partner's event table.

    Parameters
    ----------
    name
        The table's name, as node.toml ``[[source.events]]`` gives it: ``"incidents"``.
    label
        Human-readable name of what it records.
    event_id_column, date_column, type_column
        Its columns besides the partner's record id column (which it shares with the extract).
    id_prefix
        Prefix of event ids, e.g. ``"INC"`` gives ``"INC0000123"``.
    date_format
        ``strftime`` format of its dates.
    types
        Event type to its share of the table's events (the shares add up to 1).
    per_year
        Events a year for a record of average need.

    Examples
    --------
    >>> police = EVENT_PROFILES["police"]
    >>> police.name, police.date_column, "domestic_abuse" in police.types
    ('incidents', 'occurred_on', True)
    """

    name: str
    label: str
    event_id_column: str
    date_column: str
    type_column: str
    id_prefix: str
    date_format: str
    types: Mapping[str, float]
    per_year: float


def _shares(**shares: float) -> Mapping[str, float]:
    return MappingProxyType(dict(shares))


#: Partner id to its event table, for the partner kinds that have one.
EVENT_PROFILES: Mapping[str, EventProfile] = MappingProxyType(
    {
        "council": EventProfile(
            name="complaints",
            label="Housing and environmental health complaints",
            event_id_column="complaint_ref",
            date_column="received",
            type_column="complaint_type",
            id_prefix="CMP",
            date_format="%d/%m/%Y",
            types=_shares(
                noise=0.3, disrepair=0.25, overcrowding=0.15, fly_tipping=0.15, rent_arrears=0.15
            ),  # fmt: skip
            per_year=0.35,
        ),
        "police": EventProfile(
            name="incidents",
            label="Incidents involving the person",
            event_id_column="incident_no",
            date_column="occurred_on",
            type_column="incident_type",
            id_prefix="INC",
            date_format="%Y-%m-%d",
            types=_shares(
                asb=0.3,
                theft=0.15,
                violence=0.15,
                domestic_abuse=0.25,
                burglary=0.1,
                missing_person=0.05,
            ),  # fmt: skip
            per_year=0.8,
        ),
        "social_care": EventProfile(
            name="referrals",
            label="Referrals to children's and adult social care",
            event_id_column="referral_id",
            date_column="referral_date",
            type_column="reason",
            id_prefix="REF",
            date_format="%d/%m/%Y",
            types=_shares(
                child_protection=0.25,
                child_in_need=0.25,
                adult_safeguarding=0.2,
                care_assessment=0.3,
            ),  # fmt: skip
            per_year=0.9,
        ),
        "fire": EventProfile(
            name="inspections",
            label="Home fire safety visits and inspections",
            event_id_column="visit_id",
            date_column="visit_date",
            type_column="outcome",
            id_prefix="HFS",
            date_format="%Y%m%d",
            types=_shares(safe_and_well=0.6, high_risk=0.25, hoarding=0.15),
            per_year=0.3,
        ),
    }
)


def make_events(
    synthetic: Synthetic,
    *,
    seed: int = 0,
    end: dt.date = END,
    years: int = 3,
    until: dt.date | None = None,
) -> dict[str, pd.DataFrame]:
    """The event tables of ``synthetic``'s partners that keep one (see :data:`EVENT_PROFILES`).

    Parameters
    ----------
    synthetic
        What :func:`~oda_fed.synth.generate` returned; events name its partners' record ids.
    seed
        Seed; the same arguments always give the same tables.
    end
        The last day of the history.
    years
        Length of the history, in years of 365 days before ``end``.
    until
        Keep only the events dated up to this day (an earlier extract of the same history).

    Returns
    -------
    dict[str, pandas.DataFrame]
        Partner id to its table (every column ``str``), in profile order, oldest event first:
        the event id, the partner's record id column, the date in the table's format, the type.

    Examples
    --------
    >>> from oda_fed.synth import generate
    >>> data = generate(population=500, partners=3, seed=1)
    >>> tables = make_events(data, seed=1)
    >>> list(tables), list(tables["police"].columns)
    (['council', 'police', 'social_care'], ['incident_no', 'nominal_id', 'occurred_on', 'incident_type'])
    """
    if years < 1:
        raise SynthParameterError(f"years must be at least 1, not {years!r}")
    person = synthetic.truth.person_id.str.removeprefix("person_").astype(np.int64)
    root = np.random.SeedSequence(seed, spawn_key=(_STREAM,))
    need_stream, *partner_streams = root.spawn(1 + len(PROFILES))
    # Most people rarely come to notice and a few often: a gamma with mean 1 and a long tail.
    need = np.random.default_rng(need_stream).gamma(0.4, 2.5, size=int(person.max()) + 1)
    keys = zip(synthetic.truth.source, synthetic.truth.record_id, strict=True)
    whose = dict(zip(keys, person, strict=True))
    tables: dict[str, pd.DataFrame] = {}
    for index, profile in enumerate(PROFILES):
        events = EVENT_PROFILES.get(profile.id)
        if profile not in synthetic.profiles or events is None:
            continue
        records = synthetic.partners[profile.id][profile.record_id_column].to_numpy()
        people = np.array([whose[(profile.id, r)] for r in records], dtype=np.int64)
        rng = np.random.default_rng(partner_streams[index])
        table = _table(
            events, records=records, need=need[people], rng=rng, end=end, days=365 * years
        )
        if until is not None:
            table = table[table.day <= np.datetime64(until, "D")]
        tables[profile.id] = pd.DataFrame(
            {
                events.event_id_column: table.id,
                profile.record_id_column: table.record,
                events.date_column: table.day.dt.strftime(events.date_format),
                events.type_column: table.type,
            },
            dtype="str",
        ).reset_index(drop=True)
    return tables


def _table(
    events: EventProfile,
    *,
    records: np.ndarray,
    need: np.ndarray,
    rng: np.random.Generator,
    end: dt.date,
    days: int,
) -> pd.DataFrame:
    """Every event of the history, oldest first, with its day as a ``datetime64``."""
    # A partner sees each person's need through its own lens: some noise per record.
    rate = events.per_year * days / 365 * need * rng.lognormal(0.0, 0.5, size=len(records))
    counts = rng.poisson(rate)
    total = int(counts.sum())
    back = rng.integers(0, days, size=total)
    kinds = list(events.types)
    shares = np.array([events.types[k] for k in kinds])
    types = np.array(kinds, dtype=object)[
        rng.choice(len(kinds), size=total, p=shares / shares.sum())
    ]
    table = pd.DataFrame(
        {
            "record": np.repeat(records, counts),
            "day": np.datetime64(end, "D") - back.astype("timedelta64[D]"),
            "type": types,
        }
    )
    # Oldest first, so the ids of an earlier cut of the history are the same ids.
    table = table.sort_values(["day", "record", "type"], kind="stable", ignore_index=True)
    table.insert(0, "id", [f"{events.id_prefix}{i:07d}" for i in range(1, total + 1)])
    return table


def event_file(partner: str, name: str) -> str:
    """The file name of a partner's event table, beside its extract: ``police_incidents.csv``."""
    return f"{partner}_{name}.csv"


def write_events(tables: Mapping[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write each partner's event table into ``out_dir`` (see :func:`event_file`).

    Parameters
    ----------
    tables
        What :func:`make_events` returned.
    out_dir
        Folder to write to; created if missing. Existing files of the same names are replaced.

    Returns
    -------
    list[Path]
        The files, in the order of ``tables``.

    Examples
    --------
    >>> import tempfile
    >>> from oda_fed.synth import generate
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = write_events(make_events(generate(population=50, partners=2)), Path(tmp))
    ...     [p.name for p in paths]
    ['council_complaints.csv', 'police_incidents.csv']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for partner, table in tables.items():
        path = out_dir / event_file(partner, EVENT_PROFILES[partner].name)
        table.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
        paths.append(path)
    return paths
