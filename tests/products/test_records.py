"""Prioritised lists and alerts built from a linked population, against the rule written out
by hand; and an alert's baseline across releases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oda_fed.config import Project
from oda_fed.products.build import Population
from oda_fed.products.records import RECORD, build_records
from oda_fed.products.releases import Releases

LIST = {
    "id": "visit_first",
    "kind": "list",
    "title": "Visit first",
    "owner": "council",
    "recipients": ["council"],
    "indicators": [
        {"attribute": "police.incident", "points": {"yes": 3}, "group": "police"},
        {"attribute": "care.age", "points": {"65+": 2, "0-17": 1}, "group": "care"},
    ],
    "score_bands": [2, 4],
    "show_groups": True,
}
ALERT = {
    "id": "new_incidents",
    "kind": "alert",
    "title": "Newly with an incident",
    "owner": "council",
    "recipients": ["council"],
    "cohort": {"where": {"police.incident": ["yes"]}},
}


def project(*products: dict, k: int = 2, l_div: int = 1, min_cell: int = 1) -> Project:
    return Project.model_validate(
        {
            "name": "p",
            "title": "P",
            "purpose": "testing",
            "legal_gateway": "none",
            "partners": [{"id": p, "name": p} for p in ("council", "police", "care")],
            "linkage": {
                "threshold": 0.8,
                "stable_entity_ids": True,
                "fields": [{"name": "first_name", "type": "name"}],
            },  # fmt: skip
            "attributes": [
                {
                    "name": "incident",
                    "partner": "police",
                    "derive": "category",
                    "categories": {"y": "yes", "n": "no"},
                },
                {
                    "name": "age",
                    "partner": "care",
                    "derive": "age_band",
                    "at": "2026-04-01",
                    "bands": [0, 18, 65],
                },
                {
                    "name": "flag",
                    "partner": "care",
                    "derive": "category",
                    "categories": {"y": "yes", "n": "no"},
                },
            ],  # fmt: skip
            "products": list(products),
            "disclosure": {
                "min_cell": min_cell,
                "k_anonymity": k,
                "l_diversity": l_div,
                "allow_weak_disclosure": min_cell < 3,
            },
        }
    )


def population(n: int, seed: int) -> Population:
    """``n`` entities; the council holds most (record ``C<i>``), the police and care some."""
    rng = np.random.default_rng(seed)
    ids = [f"e{i:04d}" for i in range(n)]
    council = rng.random(n) < 0.8
    police = rng.random(n) < 0.5
    care = rng.random(n) < 0.5
    partners = pd.Series(council.astype(int) + police + care, index=ids)
    keep = partners > 0
    idx = pd.Index(ids)
    return Population(
        partners=partners[keep],
        values={
            "police.incident": pd.Series(rng.choice(["yes", "no"], n), index=idx)[police],
            "care.age": pd.Series(rng.choice(["0-17", "18-64", "65+", ""], n), index=idx)[care],
            "care.flag": pd.Series(rng.choice(["yes", "no"], n), index=idx)[care],
        },
        records={"council": pd.Series([f"C{i}" for i in range(n)], index=idx)[council]},
    )


def releases(tmp_path: Path, proj: Project) -> Releases:
    return Releases.in_folder(tmp_path / "state", proj, name="test")


@pytest.mark.parametrize("seed", range(4))
def test_a_list_ranks_the_owners_records_by_the_projects_score(tmp_path, seed) -> None:
    proj = project(LIST)
    pop = population(300, seed)
    built = build_records(proj, proj.products[0], pop, releases=releases(tmp_path, proj),
                          release_id="r1")  # fmt: skip
    # The rule written out: points per indicator, records of the owner scoring 2 or more.
    want = {}
    for entity, record in pop.records["council"].items():
        incident = pop.values["police.incident"].get(entity, "")
        age = pop.values["care.age"].get(entity, "")
        points = {"police": 3 * (incident == "yes"), "care": {"65+": 2, "0-17": 1}.get(age, 0)}
        score = sum(points.values())
        if score >= 2:
            band = "4+" if score >= 4 else "2-3"
            groups = "+".join(g for g in sorted(points) if points[g])
            want[record] = (1 if band == "4+" else 2, band, groups)
    rows = built.rows
    got = {r[RECORD]: (r["rank"], r["score_band"], r["groups"]) for _, r in rows.iterrows()}
    released = {r: v for r, v in want.items() if r in got}
    assert got == released
    # What was not released was left out for its group, and said so.
    assert len(want) - len(got) == built.decisions["withheld_k"]
    assert rows["rank"].is_monotonic_increasing
    assert set(rows[RECORD]) <= set(pop.records["council"])


def test_a_list_never_names_another_partners_records_or_scores_below_the_first_band(
    tmp_path,
) -> None:
    proj = project(LIST)
    pop = population(200, 9)
    rows = build_records(proj, proj.products[0], pop, releases=releases(tmp_path, proj),
                         release_id="r1").rows  # fmt: skip
    assert rows[RECORD].str.startswith("C").all()
    assert list(rows.columns) == [RECORD, "rank", "score_band", "groups"]
    assert set(rows["score_band"]) <= {"2-3", "4+"}


def test_a_small_list_is_held_and_l_diversity_applies(tmp_path) -> None:
    proj = project(LIST, min_cell=1000)
    built = build_records(proj, proj.products[0], population(200, 1),
                          releases=releases(tmp_path, proj), release_id="r1")  # fmt: skip
    assert built.rows.empty and "fewer than the 1000 allowed" in built.held

    sensitive = {**LIST, "sensitive": "care.flag"}
    proj = project(sensitive, l_div=2)
    pop = population(400, 2)
    built = build_records(proj, proj.products[0], pop, releases=releases(tmp_path, proj),
                          release_id="r1")  # fmt: skip
    flags = pop.values["care.flag"]
    by_record = pd.Series(pop.records["council"].index, index=pop.records["council"].to_numpy())
    for _, group in built.rows.groupby(["score_band", "groups"]):
        entities = by_record[group[RECORD]]
        assert flags.reindex(entities).fillna("").nunique() >= 2


def test_an_alert_names_only_entities_new_since_the_last_release(tmp_path) -> None:
    proj = project(ALERT)
    prod = proj.products[0]
    rel = releases(tmp_path, proj)
    pop = population(300, 4)
    first = build_records(proj, prod, pop, releases=rel, release_id="r1")
    assert first.rows.empty and "sets the baseline" in first.note
    # Not released (a cancelled round): no baseline yet, so the next release sets it again.
    rel.drop("r1")
    assert rel.alert_baseline(prod.id) is None
    first = build_records(proj, prod, pop, releases=rel, release_id="r2")
    rel.record("r2")
    meets = set(pop.values["police.incident"][lambda v: v == "yes"].index)
    assert rel.alert_baseline(prod.id) == meets & set(pop.records["council"].index)

    # Six more entities get an incident; one of them the council does not hold.
    incident = pop.values["police.incident"].copy()
    newly = [e for e in incident.index if incident[e] == "no"][:6]
    incident[newly] = "yes"
    records = pop.records["council"].drop(newly[5], errors="ignore")
    later = Population(partners=pop.partners, values={**pop.values, "police.incident": incident},
                       records={"council": records})  # fmt: skip
    second = build_records(proj, prod, later, releases=rel, release_id="r3")
    assert set(second.rows[RECORD]) == {records[e] for e in newly[:5] if e in records}
    rel.record("r3")
    third = build_records(proj, prod, later, releases=rel, release_id="r4")
    assert third.rows.empty and not third.held  # nobody new: nothing to say


def test_an_alert_below_k_is_held_and_stays_new(tmp_path) -> None:
    proj = project(ALERT, k=5)
    prod = proj.products[0]
    rel = releases(tmp_path, proj)
    pop = population(300, 5)
    build_records(proj, prod, pop, releases=rel, release_id="r1")
    rel.record("r1")
    incident = pop.values["police.incident"].copy()
    held_ones = [e for e in incident.index if incident[e] == "no" and e in pop.records["council"]]
    incident[held_ones[:3]] = "yes"
    later = Population(partners=pop.partners, values={**pop.values, "police.incident": incident},
                       records=pop.records)  # fmt: skip
    second = build_records(proj, prod, later, releases=rel, release_id="r2")
    assert second.rows.empty and second.decisions["withheld_k"] == 3
    rel.record("r2")
    # Two more next time: all five are new then, and go out together.
    incident[held_ones[3:5]] = "yes"
    third = build_records(proj, prod, later, releases=rel, release_id="r3")
    assert set(third.rows[RECORD]) == {pop.records["council"][e] for e in held_ones[:5]}
