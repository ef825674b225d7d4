"""Count and rate products over attributes from several partners, in a real federation: each
partner derives its attribute at its node, and only controlled tables reach the recipients."""

from __future__ import annotations

import tomllib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w

from oda_fed.audit import read_entries
from oda_fed.products.charts import PNG_SIGNATURE
from oda_fed.transport.protocol import AuditKind, RoundState

pytestmark = pytest.mark.grpc


def add_age_and_products(doc: dict) -> None:
    doc["attributes"].append(
        {
            "name": "age",
            "partner": "social_care",
            "title": "Age band on 1 April 2026",
            "derive": "age_band",
            "at": "2026-04-01",
            "bands": [0, 18, 65],
        }
    )
    doc["products"] += [
        {
            "id": "ward_by_age",
            "kind": "count",
            "title": "Residents known to two or more services, by ward and age",
            "by": ["council.ward", "social_care.age"],
            "cohort": {"min_partners": 2},
            "recipients": ["council", "social_care", "coordinator"],
        },
        {
            "id": "older_share",
            "kind": "rate",
            "title": "Share aged 65 or over, by ward",
            "by": ["council.ward"],
            "numerator": {"social_care.age": ["65+"]},
            "recipients": ["police"],
        },
        {
            "id": "incident_share",
            "kind": "rate",
            "title": "Share with a police incident in the year to 1 April 2026, by ward",
            "by": ["council.ward"],
            "numerator": {"police.recent_incident": ["yes"]},
            "recipients": ["council"],
        },
    ]
    doc["attributes"].append(
        {
            "name": "recent_incident",
            "partner": "police",
            "derive": "event_any",
            "events": "incidents",
            "event_types": ["burglary", "assault"],
            "at": "2026-04-01",
            "window_days": 365,
        }
    )


def map_age(fed) -> None:
    column = fed.synthetic.profiles[2].columns["date_of_birth"]
    fed.edit_source("social_care", lambda source, _: source["attributes"].update(age=column))


#: An event type no attribute counts: it must not appear anywhere outside the police node.
MARKER = "marker-type-never-leaves"


def give_police_an_incident_table(fed) -> int:
    """Write the police's incident table (several rows per person) beside its node.toml, with a
    relative path; returns how many of its people had a counted incident in the window."""
    source = tomllib.loads(fed.node_config("police").read_text())["source"]
    ids = fed.extract("police")[source["record_id"]].tolist()
    rng = np.random.default_rng(7)
    rows = []
    recent = set()
    for person in ids[: len(ids) * 2 // 3]:
        for _ in range(rng.integers(1, 4)):
            days_back = int(rng.integers(-30, 800))  # some after `at`, which never count
            kind = str(rng.choice(["burglary", "assault", MARKER]))
            when = date(2026, 4, 1) - timedelta(days=days_back)
            rows.append({"person": person, "on": when.isoformat(), "kind": kind})
            if 0 <= days_back < 365 and kind != MARKER:
                recent.add(person)
    fed.write_events("police", pd.DataFrame(rows))
    return len(recent)


def release_folder(federation, round_id: str, partner: str, product: str) -> Path:
    return federation.workdir / "nodes" / partner / "state" / "releases" / round_id / product


def read_release(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / f"{folder.name}.csv", dtype=str, keep_default_na=False)


def run_round(fed) -> str:
    """Run one round, which must close; its id."""
    status = fed.run_round()
    assert status.state is RoundState.CLOSED, status.message
    return status.round_id


def test_a_cross_tabulation_and_a_rate_from_two_partners_attributes(federation) -> None:
    federation.amend_project(add_age_and_products)
    map_age(federation)
    with_incident = give_police_an_incident_table(federation)
    round_id = run_round(federation)

    def released(partner: str, product: str) -> pd.DataFrame:
        return read_release(release_folder(federation, round_id, partner, product))

    cross = released("social_care", "ward_by_age")
    assert list(cross.columns) == ["council.ward", "social_care.age", "count", "suppressed"]
    assert set(cross["social_care.age"]) == {"0-17", "18-64", "65+", "not known"}
    # Every ward the council lists has its rows, linked residents or not.
    assert cross["council.ward"].nunique() == 30 + 1  # the region's wards and "not known"
    hidden = cross[cross.suppressed == "true"]
    assert (hidden["count"] == "suppressed").all() and len(hidden) < len(cross)
    assert (cross[cross.suppressed == "false"]["count"].astype(int) % 5 == 0).all()
    # Only its recipients got it.
    assert not release_folder(federation, round_id, "police", "ward_by_age").exists()

    rate = released("police", "older_share")
    assert list(rate.columns) == ["council.ward", "count", "suppressed", "denominator", "rate"]
    shown = rate[rate.rate != "suppressed"]
    assert len(shown) > 0
    share = shown["count"].astype(float) / shown["denominator"].astype(float)
    assert (share - shown["rate"].astype(float)).abs().max() < 1e-4  # from what is published
    assert (rate[rate.suppressed == "true"]["rate"] == "suppressed").all()

    # An attribute from an event table: the rate over the council's wards of residents the
    # police had a counted incident with, and only the yes/no per record left the police node.
    incidents = released("council", "incident_share")
    assert list(incidents.columns) == ["council.ward", "count", "suppressed", "denominator", "rate"]
    shown = incidents[incidents.suppressed == "false"]
    assert len(shown) > 0
    assert 0 < shown["count"].astype(int).sum() <= with_incident + 5 * len(shown)
    for stored in (federation.workdir / "coordinator").rglob("*"):
        if stored.is_file():
            assert MARKER.encode() not in stored.read_bytes(), stored

    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    checked = [e.detail["product"] for e in read_entries(log)
               if e.kind == AuditKind.DISCLOSURE_CHECKED]  # fmt: skip
    assert sorted(checked) == [
        "incident_share.denominator",
        "incident_share.numerator",
        "known_to_services_by_ward",
        "older_share.denominator",
        "older_share.numerator",
        "ward_by_age",
    ]
    page = federation.workdir / "coordinator" / "products" / round_id / "report.html"
    text = page.read_text()
    assert "by ward and age" in text and "% of " in text

    # Embedded mode on the same files, given as the nodes' own [source] tables, with the
    # coordinator's rounding key: exactly the same released tables.
    analysed = federation.analyse(
        key=federation.workdir / "coordinator" / "state" / "disclosure.key"
    )
    for product in ("known_to_services_by_ward", "ward_by_age", "older_share", "incident_share"):
        federated = federation.workdir / "coordinator" / "products" / round_id
        assert (analysed / f"{product}.csv").read_text() == (
            federated / f"{product}.csv"
        ).read_text(), product


def add_maps(doc: dict) -> None:
    """A count and a rate by ward, and the same two as maps on the coordinator's ward
    boundaries."""
    add_age_and_products(doc)
    two = {"by": ["council.ward"], "cohort": {"min_partners": 2}}
    older = {"by": ["council.ward"], "numerator": {"social_care.age": ["65+"]}}
    on_wards = {"kind": "map", "boundaries": "wards"}
    doc["products"] = [
        {"id": "ward_count", "kind": "count", "title": "By ward", "recipients": ["council"], **two},
        {"id": "ward_map", "title": "Mapped", "recipients": ["police"], **two, **on_wards},
        {"id": "older_rate", "kind": "rate", "title": "65+", "recipients": ["council"], **older},
        {"id": "older_map", "title": "65+ mapped", "recipients": ["police"], **older, **on_wards},
    ]


def test_a_map_is_released_with_the_values_of_the_count_it_draws(federation) -> None:
    federation.amend_project(add_maps)
    map_age(federation)
    round_id = run_round(federation)

    def released(partner: str, product: str) -> pd.DataFrame:
        return read_release(release_folder(federation, round_id, partner, product))

    for product in ("ward_map", "older_map"):
        folder = release_folder(federation, round_id, "police", product)
        assert sorted(p.name for p in folder.iterdir()) == [
            f"{product}.{kind}" for kind in ("csv", "html", "png")
        ]
        assert (folder / f"{product}.png").read_bytes().startswith(PNG_SIGNATURE)
        # Only its recipients got it.
        assert not release_folder(federation, round_id, "council", product).exists()

    # Same cells, same cohort: the same controlled counts, suppressed in the same places.
    counted, mapped = released("council", "ward_count"), released("police", "ward_map")
    assert list(mapped.columns) == ["council.ward", "count", "suppressed"]
    pd.testing.assert_frame_equal(mapped, counted)
    assert (mapped.suppressed == "false").any() and len(mapped) == 30 + 1
    rate, rate_map = released("council", "older_rate"), released("police", "older_map")
    assert list(rate_map.columns) == ["council.ward", "count", "suppressed", "denominator", "rate"]
    pd.testing.assert_frame_equal(rate_map, rate)
    assert (rate_map.rate != "suppressed").any()


@pytest.mark.parametrize("given", ["nothing", "a missing file"])
def test_a_map_on_boundaries_the_coordinator_lacks_stops_it_at_start(tmp_path, given: str) -> None:
    import threading

    from oda_fed.config import fingerprint_bytes, load_coordinator_config
    from oda_fed.coordinator.server import serve
    from oda_fed.demo import setup
    from oda_fed.errors import ConfigError

    setup(tmp_path / "fed", population=50, seed=1, errors="low")
    project = tmp_path / "fed" / "project.toml"
    doc = tomllib.loads(project.read_text())
    doc["products"].append(
        {"id": "ward_map", "kind": "map", "title": "t", "by": ["council.ward"],
         "boundaries": "wards", "recipients": ["council"]}
    )  # fmt: skip
    project.write_text(tomli_w.dumps(doc))
    path = tmp_path / "fed" / "coordinator" / "coordinator.toml"
    config = tomllib.loads(path.read_text())
    config["project_fingerprint"] = fingerprint_bytes(project.read_bytes())
    if given == "nothing":
        del config["boundaries"]
    else:
        config["boundaries"] = {"wards": "gone.geojson"}
    path.write_text(tomli_w.dumps(config))
    stopped = threading.Event()
    stopped.set()  # were it to start, it would stop at once
    expected = "which the configuration does not give" if given == "nothing" else "not found"
    with pytest.raises(ConfigError, match=expected):
        serve(load_coordinator_config(path), config_path=path, stop_event=stopped)
    assert not (tmp_path / "fed" / "coordinator" / "state").exists()  # stopped before anything
