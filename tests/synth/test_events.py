"""Synthetic event tables: deterministic, about the partners' own records, cut by date as an
earlier extract would be, and readable by a node as its project declares them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oda_fed.config import Attribute, EventTable
from oda_fed.node.events import derive_events
from oda_fed.synth import generate
from oda_fed.synth.events import END, EVENT_PROFILES, make_events, write_events
from oda_fed.synth.generator import Simulation, SynthParameterError


def test_the_same_seed_gives_the_same_tables_and_another_seed_others(medium3: Simulation) -> None:
    synthetic = medium3.synthetic
    first, again = make_events(synthetic, seed=4), make_events(synthetic, seed=4)
    assert list(first) == ["council", "police", "social_care"]
    for partner, table in first.items():
        pd.testing.assert_frame_equal(table, again[partner])
    assert not make_events(synthetic, seed=5)["police"].equals(first["police"])


def test_each_table_is_about_its_partners_records_in_the_history(medium3: Simulation) -> None:
    synthetic = medium3.synthetic
    for partner, table in make_events(synthetic, seed=1, years=2).items():
        events, profile = EVENT_PROFILES[partner], medium3.synthetic.profiles
        record_id = next(p for p in profile if p.id == partner).record_id_column
        assert list(table.columns) == [
            events.event_id_column, record_id, events.date_column, events.type_column
        ]  # fmt: skip
        assert table[events.event_id_column].is_unique
        assert set(table[record_id]) <= set(synthetic.partners[partner][record_id])
        days = pd.to_datetime(table[events.date_column], format=events.date_format)
        assert days.is_monotonic_increasing  # oldest first
        assert days.min() > pd.Timestamp(END - dt.timedelta(days=730))
        assert days.max() <= pd.Timestamp(END)
        assert set(table[events.type_column]) == set(events.types)
        # Several rows for some people, none for most: a long tail.
        per_record = table[record_id].value_counts()
        assert per_record.max() >= 5
        assert len(per_record) < 0.8 * len(synthetic.partners[partner])


def test_an_earlier_extract_is_the_start_of_the_same_history(medium3: Simulation) -> None:
    synthetic = medium3.synthetic
    full = make_events(synthetic, seed=2)
    cut = make_events(synthetic, seed=2, until=dt.date(2026, 3, 1))
    for partner, table in full.items():
        earlier = cut[partner]
        assert 0 < len(earlier) < len(table)
        pd.testing.assert_frame_equal(earlier, table.iloc[: len(earlier)])


def test_people_known_to_one_service_for_events_tend_to_be_known_to_another(
    medium3: Simulation,
) -> None:
    """One hidden need per person drives every partner's events, as real caseloads overlap."""
    synthetic = medium3.synthetic
    truth = synthetic.truth.set_index(["source", "record_id"]).person_id
    tables = make_events(synthetic, seed=3)

    def people(partner: str, column: str) -> set[str]:
        return {truth[(partner, r)] for r in tables[partner][column]}

    with_incident = people("police", "nominal_id")
    referred = people("social_care", "client_id")
    both = set(truth[truth.index.get_level_values(0) == "police"]) & set(
        truth[truth.index.get_level_values(0) == "social_care"]
    )
    share_with = len(referred & with_incident & both) / len(with_incident & both)
    share_without = len((referred & both) - with_incident) / len(both - with_incident)
    assert share_with > share_without + 0.1


def test_a_node_reads_the_written_tables_as_their_profiles_declare(
    tmp_path: Path, medium3: Simulation
) -> None:
    synthetic = medium3.synthetic
    paths = write_events(make_events(synthetic, seed=6), tmp_path)
    assert [p.name for p in paths] == [
        "council_complaints.csv", "police_incidents.csv", "social_care_referrals.csv"
    ]  # fmt: skip
    police = EVENT_PROFILES["police"]
    table = EventTable(
        name=police.name,
        path=paths[1],
        record_id="nominal_id",
        date=police.date_column,
        type=police.type_column,
        date_format=police.date_format,
    )
    recent = Attribute(name="domestic", partner="police", derive="event_any",
                       events=police.name, event_types=["domestic_abuse"], at=END,
                       window_days=90)  # fmt: skip
    ids = synthetic.partners["police"]["nominal_id"].to_numpy()
    summary = derive_events(table, attributes=[recent], record_ids=ids)
    assert summary.unmatched == summary.invalid == summary.undated == 0
    labels = np.array(summary.values["domestic"])
    events = pd.read_csv(paths[1], dtype=str)
    expected = events[
        (events.incident_type == "domestic_abuse")
        & (pd.to_datetime(events.occurred_on) > pd.Timestamp(END - dt.timedelta(days=90)))
    ].nominal_id
    assert set(ids[labels == "yes"]) == set(expected) and len(expected) > 0


def test_impossible_arguments_are_refused() -> None:
    with pytest.raises(SynthParameterError, match="years"):
        make_events(generate(population=20, partners=2), years=0)
