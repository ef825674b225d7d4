"""A prioritised list and an alert in a real federation, over two rounds: each goes to the
council alone with the council's own record ids, which the coordinator never sees."""

from __future__ import annotations

import tomllib
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from oda_fed.audit import read_entries
from oda_fed.transport.protocol import AuditKind, RoundState

pytestmark = pytest.mark.grpc

AT = date(2026, 4, 1)


def add_list_and_alert(doc: dict) -> None:
    doc["linkage"]["stable_entity_ids"] = True
    doc["attributes"] += [
        {"name": "age", "partner": "social_care", "derive": "age_band", "at": AT.isoformat(),
         "bands": [0, 18, 65]},
        {"name": "recent_incident", "partner": "police", "derive": "event_any",
         "events": "incidents", "at": AT.isoformat(), "window_days": 90},
    ]  # fmt: skip
    doc["products"] += [
        {
            "id": "visit_first",
            "kind": "list",
            "title": "Residents to visit first",
            "owner": "council",
            "recipients": ["council"],
            "indicators": [
                {"attribute": "police.recent_incident", "points": {"yes": 3}, "group": "police"},
                {
                    "attribute": "social_care.age",
                    "points": {"65+": 2, "0-17": 1},
                    "group": "social_care",
                },
            ],  # fmt: skip
            "score_bands": [2, 4],
            "show_groups": True,
        },
        {
            "id": "new_incidents",
            "kind": "alert",
            "title": "Residents newly known to the police for an incident",
            "owner": "council",
            "recipients": ["council"],
            "cohort": {"where": {"police.recent_incident": ["yes"]}},
        },
    ]
    doc["disclosure"] = {"min_cell": 5, "k_anonymity": 3}


def incidents(people: list[str]) -> pd.DataFrame:
    """One recent incident for each of ``people``, and an old one for every third."""
    rows = [{"person": p, "on": (AT - timedelta(days=10)).isoformat(), "kind": "assault"}
            for p in people]  # fmt: skip
    rows += [{"person": p, "on": "2020-01-01", "kind": "burglary"} for p in people[::3]]
    return pd.DataFrame(rows)


def run_round(fed):
    status = fed.run_round()
    assert status.state is RoundState.CLOSED, status.message
    return status


def received(fed, round_id: str, product: str) -> pd.DataFrame:
    path = fed.workdir / "nodes" / "council" / "state" / "releases" / round_id / product
    return pd.read_csv(path / f"{product}.csv", dtype=str, keep_default_na=False)


def entities(fed, partner: str) -> dict[str, str]:
    return fed.entity_ids(partner)


def test_a_list_and_an_alert_reach_their_owner_with_its_own_record_ids(federation) -> None:
    federation.amend_project(add_list_and_alert)
    column = federation.synthetic.profiles[2].columns["date_of_birth"]
    federation.edit_source("social_care", lambda source, _: source["attributes"].update(age=column))
    police_ids = federation.extract("police")[
        tomllib.loads(federation.node_config("police").read_text())["source"]["record_id"]
    ].tolist()
    rng = np.random.default_rng(3)
    order = list(rng.permutation(police_ids))
    federation.write_events("police", incidents(order[:100]))
    first = run_round(federation)

    council_ids = set(entities(federation, "council"))
    visit = received(federation, first.round_id, "visit_first")
    assert list(visit.columns) == ["record_id", "rank", "score_band", "groups"]
    assert len(visit) >= 5 and set(visit.record_id) <= council_ids
    assert visit["rank"].astype(int).is_monotonic_increasing
    # Each listed record's band is the score of its entity, worked out from the nodes' own
    # files: the police's incidents and social care's ages for the same entity.
    police_entity = entities(federation, "police")
    with_incident = {police_entity[p] for p in order[:100] if p in police_entity}
    council_entity = entities(federation, "council")
    for _, row in visit.iterrows():
        if "police" in row["groups"]:
            assert council_entity[row.record_id] in with_incident
    alert = received(federation, first.round_id, "new_incidents")
    assert list(alert.columns) == ["record_id"] and alert.empty  # the first round sets the baseline

    # Round 2: 40 more people have a recent incident.
    federation.write_events("police", incidents(order[:140]))
    second = run_round(federation)
    alert = received(federation, second.round_id, "new_incidents")
    police_entity = entities(federation, "police")
    council_entity = entities(federation, "council")
    newly = {police_entity[p] for p in order[100:140]}
    assert len(alert) >= 3
    assert {council_entity[r] for r in alert.record_id} <= newly

    # Nobody else got either; the coordinator holds the refs, never a council record id.
    for partner in ("police", "social_care"):
        folder = federation.workdir / "nodes" / partner / "state" / "releases" / second.round_id
        assert not (folder / "new_incidents").exists() and not (folder / "visit_first").exists()
    blob = b"".join(
        p.read_bytes() for p in (federation.workdir / "coordinator").rglob("*") if p.is_file()
    )
    assert not [r for r in [*visit.record_id, *alert.record_id] if r.encode() in blob]
    # The council's audit log counts the records it received in each list.
    log = federation.workdir / "nodes" / "council" / "audit" / "council.jsonl"
    results = [e for e in read_entries(log) if e.kind == AuditKind.INSTRUCTION_RESULT]
    assert len(alert) in [e.records for e in results if e.round == second.round_id]
