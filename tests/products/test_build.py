"""Building products: a product's true cells (:func:`true_cells`) are exactly what is
controlled; and the products of one release are controlled together, so the attack of reading a
suppressed cell of one product off another's published cells fails, as it succeeds when each is
controlled on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oda_fed.config import Project
from oda_fed.products.build import (
    UNKNOWN_AREA,
    Population,
    build_product,
    build_products,
    true_cells,
)
from oda_fed.products.crosstab import NOT_KNOWN
from oda_fed.products.releases import Releases

PROJECT = {
    "name": "build",
    "title": "Build",
    "purpose": "test",
    "legal_gateway": "test",
    "partners": [
        {"id": "council", "name": "Council"},
        {"id": "police", "name": "Police"},
        {"id": "social_care", "name": "Social care"},
    ],
    "linkage": {"fields": [{"name": "last_name", "type": "name"}]},
    "attributes": [
        {"name": "ward", "partner": "council", "domain": {"codes": ["W1", "W2", "W3"]}},
        {
            "name": "age",
            "partner": "social_care",
            "derive": "age_band",
            "at": "2026-04-01",
            "bands": [0, 18, 65],
        },
    ],  # fmt: skip
    "products": [
        {
            "id": "by_ward",
            "kind": "partner_count_by_area",
            "title": "By ward",
            "area": {"partner": "council", "attribute": "ward"},
            "recipients": ["council"],
        },
        {
            "id": "ward_by_age",
            "kind": "count",
            "title": "By ward and age",
            "by": ["council.ward", "social_care.age"],
            "cohort": {"min_partners": 2},
            "recipients": ["council"],
        },
        {
            "id": "shared",
            "kind": "rate",
            "title": "Known to two or more, by ward",
            "by": ["council.ward"],
            "numerator": {"partners": ["2", "3"]},
            "recipients": ["council"],
        },
    ],  # fmt: skip
    "disclosure": {"min_cell": 3, "rounding_base": 5},
}


@pytest.fixture
def project() -> Project:
    return Project.model_validate(PROJECT)


@pytest.fixture
def population() -> Population:
    """400 entities: partners 1-3, a ward for those the council knows, an age band for social
    care's, with a few empty values (not known)."""
    rng = np.random.default_rng(11)
    ids = [f"e{i:04d}" for i in range(400)]
    partners = pd.Series(rng.choice([1, 2, 3], size=400, p=[0.5, 0.3, 0.2]), index=ids)
    council = rng.random(400) < 0.7
    care = rng.random(400) < 0.5
    ward = rng.choice(["W1", "W2", "W3", ""], size=400, p=[0.5, 0.3, 0.15, 0.05])
    age = rng.choice(["0-17", "18-64", "65+", ""], size=400, p=[0.2, 0.5, 0.25, 0.05])
    return Population(
        partners=partners,
        values={
            "council.ward": pd.Series(ward[council], index=np.array(ids)[council], dtype=object),
            "social_care.age": pd.Series(age[care], index=np.array(ids)[care], dtype=object),
        },
    )


def by_hand(population: Population, prod_id: str) -> pd.Series:
    """The same counts with a plain groupby, by cell, nonzero cells only."""
    frame = pd.DataFrame({"partners": population.partners})
    for name, values in population.values.items():
        frame[name] = values.reindex(frame.index).replace("", np.nan)
    if prod_id == "by_ward":
        frame["council.ward"] = frame["council.ward"].fillna(UNKNOWN_AREA)
        return frame.groupby(["council.ward", "partners"]).size()
    frame = frame.fillna(NOT_KNOWN)
    frame = frame[frame["partners"] >= 2]
    return frame.groupby(["council.ward", "social_care.age"]).size()


def test_true_cells_are_the_true_counts(project: Project, population: Population) -> None:
    tables = {p.id: true_cells(project, p, population) for p in project.products}
    assert [t.part for t in tables["shared"]] == ["denominator", "numerator"]
    for prod_id in ("by_ward", "ward_by_age"):
        (table,) = tables[prod_id]
        cells = table.cells
        dims = [c for c in cells.columns if c != "count"]
        # Every cell is there, zeros included, and the nonzero ones are the groupby's.
        assert len(cells) == len(cells[dims].drop_duplicates())
        got = cells[cells["count"] > 0].astype({d: str for d in dims}).set_index(dims)["count"]
        want = by_hand(population, prod_id)
        want.index = want.index.set_levels([level.astype(str) for level in want.index.levels])
        assert got.sort_index().to_dict() == want.sort_index().to_dict()
    denominator, numerator = (t.cells["count"].to_numpy() for t in tables["shared"])
    assert (numerator <= denominator).all() and numerator.sum() == (population.partners >= 2).sum()
    assert denominator.sum() == len(population.partners)


def test_build_product_controls_exactly_the_true_cells(
    project: Project, population: Population, tmp_path: Path
) -> None:
    releases = Releases.in_folder(tmp_path, project, name="test")
    for prod in project.products:
        built = build_product(
            project,
            prod,
            population,
            releases=releases,
            release_id="r1",
            report_dir=tmp_path / "reports",
        )
        table = built.product.table
        true = {t.part: t.cells for t in true_cells(project, prod, population)}
        pairs = [("count", true["numerator" if prod.kind == "rate" else ""])]
        if prod.kind == "rate":
            pairs.append(("denominator", true["denominator"]))
        for column, cells in pairs:
            dims = [c for c in cells.columns if c != "count"]
            assert (table[dims].astype(str).to_numpy() == cells[dims].astype(str).to_numpy()).all()
            shown = table[column].to_numpy(dtype=float, na_value=np.nan)
            counts = cells["count"].to_numpy()
            published = ~np.isnan(shown)
            # Small counts never published; the rest rounded to a neighbouring multiple of 5.
            assert (counts[published] >= 3).all()
            assert (np.abs(shown[published] - counts[published]) < 5).all()


# --- a release's products together ---------------------------------------------------------------

WARDS = ["W1", "W2", "W3", "W4"]
BY_PARTNERS = {"id": "by_partners", "kind": "count", "title": "By number of partners",
               "by": ["partners"], "recipients": ["council"]}  # fmt: skip
BY_WARD_PARTNERS = {"id": "by_ward_partners", "kind": "count", "title": "By ward and partners",
                    "by": ["council.ward", "partners"], "recipients": ["council"]}  # fmt: skip
#: Entities by ward ("" for none) and number of partners; W1 has 3 known to two partners.
SIZES = {
    ("W1", 1): 20, ("W1", 2): 3, ("W1", 3): 30,
    ("W2", 1): 15, ("W2", 2): 25, ("W2", 3): 14,
    ("W3", 1): 11, ("W3", 2): 40, ("W3", 3): 8,
    ("W4", 1): 30, ("W4", 2): 35, ("W4", 3): 21,
    ("", 1): 16, ("", 2): 12, ("", 3): 9,
}  # fmt: skip


def ward_project(*products: dict, rounding_base: int = 1) -> Project:
    return Project.model_validate(
        {
            "name": "p",
            "title": "P",
            "purpose": "testing",
            "legal_gateway": "none",
            "partners": [{"id": p, "name": p} for p in ("council", "police", "care")],
            "linkage": {"threshold": 0.8, "fields": [{"name": "first_name", "type": "name"}]},
            "attributes": [
                {"name": "ward", "partner": "council", "domain": {"codes": WARDS}},
                {
                    "name": "age",
                    "partner": "care",
                    "derive": "age_band",
                    "at": "2026-04-01",
                    "bands": [0, 18, 65],
                },
            ],  # fmt: skip
            "products": list(products),
            # No rounding, so that what an attacker works out is exact.
            "disclosure": {"min_cell": 5, "rounding_base": rounding_base},
        }
    )


def ward_population() -> Population:
    ward, partners = [], []
    for (w, p), n in SIZES.items():
        ward += [w] * n
        partners += [p] * n
    ids = [f"e{i:04d}" for i in range(len(ward))]
    wards = pd.Series(ward, index=ids)
    return Population(partners=pd.Series(partners, index=ids),
                      values={"council.ward": wards[wards != ""]})  # fmt: skip


def releases_in(tmp_path: Path, proj: Project, name: str) -> Releases:
    return Releases.in_folder(tmp_path / name, proj, name="t")


def attack(totals: pd.DataFrame, cells: pd.DataFrame) -> dict[tuple[str, str], int]:
    """Every cell of the ward table an attacker works out exactly: a published count by
    number of partners less the published cells of its column, when just one is suppressed."""
    found = {}
    for partners, column in cells.groupby("partners"):
        total = totals.loc[totals["partners"] == partners, "count"].iloc[0]
        hidden = column[column.suppressed]
        if not pd.isna(total) and len(hidden) == 1:
            found[(hidden["council.ward"].iloc[0], partners)] = int(total - column["count"].sum())
    return found


def test_a_suppressed_cell_cannot_be_read_off_another_product_of_the_release(tmp_path) -> None:
    proj = ward_project(BY_PARTNERS, BY_WARD_PARTNERS)
    pop = ward_population()
    alone = {
        prod.id: build_product(proj, prod, pop, releases=releases_in(tmp_path, proj, prod.id),
                               release_id="r1", report_dir=tmp_path / "reports").product.table
        for prod in proj.products
    }  # fmt: skip
    # Controlled one at a time, the count by partners gives W1's 3 known to two partners away.
    found = attack(alone["by_partners"], alone["by_ward_partners"])
    assert found[("W1", "2")] == 3

    together = build_products(
        proj, [(p, pop) for p in proj.products], releases=releases_in(tmp_path, proj, "joint"),
        release_id="r1", report_dir=tmp_path / "reports",
    )  # fmt: skip
    totals = together["by_partners"].product.table
    cells = together["by_ward_partners"].product.table
    assert attack(totals, cells) == {}
    # Each column's suppressed cells, with its total published, hide at least min_cell.
    true = {(w or "not known", str(p)): n for (w, p), n in SIZES.items()}
    for partners, column in cells.groupby("partners"):
        if not totals.loc[totals["partners"] == partners, "suppressed"].iloc[0]:
            hidden = column[column.suppressed]
            small = sum(true[(w, partners)] for w in hidden["council.ward"])
            assert hidden.empty or (len(hidden) >= 2 and small >= 5)
    assert cells["count"].notna().sum() >= 9  # the rest is still published


def test_the_same_table_in_two_products_is_published_the_same_way(tmp_path) -> None:
    by_ward = {"id": "by_ward", "kind": "count", "title": "By ward", "by": ["council.ward"],
               "cohort": {"min_partners": 2}, "recipients": ["council"]}  # fmt: skip
    again = {**by_ward, "id": "again", "title": "Again"}
    legacy = {
        "id": "legacy",
        "kind": "partner_count_by_area",
        "title": "By ward and partners",
        "area": {"partner": "council", "attribute": "ward"},
        "recipients": ["council"],
    }
    count = {"id": "by_ward_partners", "kind": "count", "title": "By ward and partners",
             "by": ["council.ward", "partners"], "recipients": ["council"]}  # fmt: skip
    proj = ward_project(by_ward, again, legacy, count, rounding_base=5)
    pop = ward_population()
    built = build_products(
        proj, [(p, pop) for p in proj.products], releases=releases_in(tmp_path, proj, "joint"),
        release_id="r1", report_dir=tmp_path / "reports",
    )  # fmt: skip
    pd.testing.assert_frame_equal(built["by_ward"].product.table, built["again"].product.table)
    old = built["legacy"].product.table.replace({"area": {"area not known": "not known"}})
    new = built["by_ward_partners"].product.table
    old = old.assign(partners=old.partners.astype(str)).sort_values(["area", "partners"])
    new = new.sort_values(["council.ward", "partners"])
    assert old["count"].tolist() == new["count"].tolist()
    assert old["suppressed"].tolist() == new["suppressed"].tolist()


def test_the_ledger_keeps_every_cohort_of_a_release(
    project: Project, population: Population, tmp_path: Path
) -> None:
    """Two products count by ward in different cohorts (every entity, and those known to two or
    more). Both reach the ledger, so a small change to either is held the next time: the
    differencing attack on the wider cohort fails as on the narrower."""
    by_ward = {"kind": "count", "title": "t", "by": ["council.ward"], "recipients": ["council"]}
    spec = Project.model_validate(
        {**PROJECT, "products": [{**by_ward, "id": "everyone"},
                                 {**by_ward, "id": "several", "cohort": {"min_partners": 2}}]}
    )  # fmt: skip
    releases = Releases.in_folder(tmp_path, spec, name="t")

    def release(release_id: str, pop: Population) -> list[str]:
        built = build_products(spec, [(p, pop) for p in spec.products], releases=releases,
                               release_id=release_id, report_dir=tmp_path)  # fmt: skip
        releases.record(release_id)
        return [line for b in built.values() for line in b.held]

    assert release("r1", population) == []
    # Two entities known to one partner leave ward W1: only the wider cohort's W1 changes.
    ward = population.values["council.ward"]
    leaving = [e for e in ward.index[ward == "W1"] if population.partners[e] == 1][:2]
    moved = Population(
        partners=population.partners.drop(leaving),
        values={k: v.drop(leaving, errors="ignore") for k, v in population.values.items()},
    )
    held = release("r2", moved)
    assert any(line.startswith("everyone (council.ward=W1)") for line in held), held
    assert not any(line.startswith("several") for line in held), held


def test_an_area_nested_in_another_cannot_give_a_suppressed_cell_away(tmp_path: Path) -> None:
    """The overlapping-areas attack: LSOAs nest in wards, so a ward's published count less its
    other LSOAs' is its suppressed LSOA. Controlled apart it succeeds; together (the coordinator
    sees that each LSOA's entities are all in one ward) it fails. Unrounded, to make it plain."""
    lsoas = {"L1": "W1", "L2": "W1", "L3": "W2", "L4": "W2"}
    spec = Project.model_validate(
        {
            **PROJECT,
            "attributes": [
                {"name": "lsoa", "partner": "council", "domain": {"codes": list(lsoas)}},
                {"name": "ward", "partner": "council", "domain": {"codes": ["W1", "W2"]}},
            ],
            "products": [
                {
                    "id": "by_lsoa",
                    "kind": "count",
                    "title": "t",
                    "by": ["council.lsoa"],
                    "recipients": ["police"],
                },
                {
                    "id": "by_ward",
                    "kind": "count",
                    "title": "t",
                    "by": ["council.ward"],
                    "recipients": ["police"],
                },
            ],  # fmt: skip
            "disclosure": {"min_cell": 5, "rounding_base": 1},
        }
    )
    sizes = {"L1": 40, "L2": 3, "L3": 30, "L4": 25}
    lsoa = [code for code, n in sizes.items() for _ in range(n)]
    ids = [f"e{i}" for i in range(len(lsoa))]
    pop = Population(
        partners=pd.Series(1, index=ids),
        values={
            "council.lsoa": pd.Series(lsoa, index=ids, dtype=object),
            "council.ward": pd.Series([lsoas[c] for c in lsoa], index=ids, dtype=object),
        },
    )

    def recovered(built: dict) -> int | None:
        by_lsoa = built["by_lsoa"].product.table.set_index("council.lsoa")["count"]
        ward = built["by_ward"].product.table.set_index("council.ward")["count"]["W1"]
        assert pd.isna(by_lsoa["L2"])
        return None if pd.isna(ward) or pd.isna(by_lsoa["L1"]) else int(ward - by_lsoa["L1"])

    alone = {
        prod.id: build_product(spec, prod, pop, releases=releases_in(tmp_path, spec, prod.id),
                               release_id="r1", report_dir=tmp_path / "reports")
        for prod in spec.products
    }  # fmt: skip
    assert recovered(alone) == 3
    together = build_products(
        spec, [(p, pop) for p in spec.products], releases=releases_in(tmp_path, spec, "joint"),
        release_id="r1", report_dir=tmp_path / "reports",
    )  # fmt: skip
    assert recovered(together) is None
