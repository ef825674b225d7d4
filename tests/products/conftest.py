"""A small hand-made linkage result with known counts, shared by the products tests."""

from __future__ import annotations

import pandas as pd
import pytest

from oda_fed.disclosure import DisclosureRules
from oda_fed.products import ProductTable, partner_count_by_area


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
