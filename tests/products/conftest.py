"""A small hand-made linkage result with known counts, and a released round of a project's
products, shared by the products tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oda_fed.config import Project
from oda_fed.disclosure import DisclosureRules
from oda_fed.products import ProductTable, partner_count_by_area, write_product
from oda_fed.products.build import Population, build_product
from oda_fed.products.note import Provenance
from oda_fed.products.pages import write_dashboard
from oda_fed.products.releases import Releases
from oda_fed.synth import PROFILES, project_document
from oda_fed.synth.project import ward_codes


@pytest.fixture
def entity_partners() -> pd.Series:
    # e1..e10 -> number of partners (of 3) that know each entity.
    values = [1, 1, 2, 3, 1, 2, 2, 1, 3, 1]
    return pd.Series(values, index=[f"e{i}" for i in range(1, 11)])


@pytest.fixture
def entity_area() -> pd.Series:
    # The area-holding partner knows e1..e7; it holds no area for e7. e8..e10 are unknown to it.
    return pd.Series(
        ["W2", "W2", "W2", "W1", "W1", "W1", None],
        index=["e1", "e2", "e3", "e4", "e5", "e6", "e7"],
    )


@pytest.fixture
def exact_product(entity_partners: pd.Series, entity_area: pd.Series) -> ProductTable:
    """The product with suppression and rounding off, so the true counts show."""
    return partner_count_by_area(
        entity_partners=entity_partners,
        entity_area=entity_area,
        product_id="known_to_services",
        title="Known to services",
        rules=DisclosureRules(min_cell=0, rounding_base=1),
        n_partners=3,
    )


@pytest.fixture
def controlled_product(entity_partners: pd.Series, entity_area: pd.Series) -> ProductTable:
    """The same product with cells below 2 suppressed."""
    return partner_count_by_area(
        entity_partners=entity_partners,
        entity_area=entity_area,
        product_id="known_to_services",
        title="Known to services",
        rules=DisclosureRules(min_cell=2, rounding_base=1),
        n_partners=3,
    )


# --- a released round: a project's products built, written and put on a dashboard -----------------


@dataclass
class ReleasedRound:
    """One release of three products (by area, a cross-tabulation, a rate), as published."""

    project: Project
    provenance: Provenance
    folder: Path
    products: list[tuple[ProductTable, dict[str, Path]]]
    dashboard: Path


def released_project(*, title: str = "Residents known to several services") -> Project:
    """The synthetic partners' project, with an age band from social care and two products
    over two partners' attributes."""
    doc = project_document(PROFILES[:3], threshold=0.8)
    doc["title"] = title
    doc["attributes"].append(
        {"name": "age", "partner": "social_care", "title": "Age band on 1 April 2026",
         "derive": "age_band", "at": "2026-04-01", "bands": [0, 18, 65]}
    )  # fmt: skip
    doc["products"] += [
        {"id": "ward_by_age", "kind": "count", "title": "Known to two or more services, by age",
         "by": ["council.ward", "social_care.age"], "cohort": {"min_partners": 2},
         "recipients": ["council"]},
        {"id": "older_share", "kind": "rate", "title": "Share aged 65 or over, by ward",
         "by": ["council.ward"], "numerator": {"social_care.age": ["65+"]},
         "recipients": ["police"]},
    ]  # fmt: skip
    return Project.model_validate(doc)


def build_round(
    root: Path, *, release_id: str, generated_at: str, seed: int = 0, project: Project | None = None
) -> ReleasedRound:
    """Build every product of the project over a random linked population, write each product's
    files into ``root/release_id`` and the round's dashboard beside them."""
    project = project or released_project()
    rng = np.random.default_rng(seed)
    n = 4000
    ids = [f"e{i}" for i in range(n)]
    partners = pd.Series(rng.choice([1, 2, 3], size=n, p=[0.5, 0.3, 0.2]), index=ids)
    wards = ward_codes()[:12]
    at_council = rng.random(n) < 0.7
    ward = pd.Series(rng.choice([*wards, ""], size=n), index=ids)[at_council]
    at_care = rng.random(n) < 0.5
    age = pd.Series(rng.choice(["0-17", "18-64", "65+", ""], size=n), index=ids)[at_care]
    population = Population(
        partners=partners, values={"council.ward": ward, "social_care.age": age}
    )
    folder = root / release_id
    releases = Releases.in_folder(root / "state", project, name="test")
    provenance = Provenance(
        project=project, fingerprint="sha256:" + "ab" * 32, release_id=release_id,
        generated_at=generated_at,
    )  # fmt: skip
    made = []
    for prod in project.products:
        built = build_product(
            project, prod, population, releases=releases, release_id=release_id, report_dir=folder
        )
        made.append((built.product, write_product(built.product, folder, provenance=provenance)))
    dashboard = write_dashboard(folder, products=made, provenance=provenance)
    return ReleasedRound(project, provenance, folder, made, dashboard)


@pytest.fixture(scope="session")
def released_round(tmp_path_factory: pytest.TempPathFactory) -> ReleasedRound:
    return build_round(
        tmp_path_factory.mktemp("published"), release_id="r20260401T090000-0001",
        generated_at="2026-04-01T09:00:00+00:00",
    )  # fmt: skip
