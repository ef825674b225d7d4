"""A product's true cells (:func:`true_cells`) are exactly what :func:`build_product` controls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oda_fed.config import Project
from oda_fed.products.build import UNKNOWN_AREA, Population, build_product, true_cells
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
