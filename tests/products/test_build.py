"""Products of one release controlled together: the attack of reading a suppressed cell of one
product off another product's published cells fails, as it succeeds when each is controlled on
its own."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from oda_fed.config import Project
from oda_fed.products.build import Population, build_product, build_products
from oda_fed.products.releases import Releases

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


def project(*products: dict, rounding_base: int = 1) -> Project:
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


def population() -> Population:
    ward, partners = [], []
    for (w, p), n in SIZES.items():
        ward += [w] * n
        partners += [p] * n
    ids = [f"e{i:04d}" for i in range(len(ward))]
    wards = pd.Series(ward, index=ids)
    return Population(partners=pd.Series(partners, index=ids),
                      values={"council.ward": wards[wards != ""]})  # fmt: skip


def releases(tmp_path: Path, proj: Project, name: str) -> Releases:
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
    proj = project(BY_PARTNERS, BY_WARD_PARTNERS)
    pop = population()
    alone = {
        prod.id: build_product(proj, prod, pop, releases=releases(tmp_path, proj, prod.id),
                               release_id="r1", report_dir=tmp_path / "reports").product.table
        for prod in proj.products
    }  # fmt: skip
    # Controlled one at a time, the count by partners gives W1's 3 known to two partners away.
    found = attack(alone["by_partners"], alone["by_ward_partners"])
    assert found[("W1", "2")] == 3

    together = build_products(
        proj, [(p, pop) for p in proj.products], releases=releases(tmp_path, proj, "joint"),
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
    proj = project(by_ward, again, legacy, count, rounding_base=5)
    pop = population()
    built = build_products(
        proj, [(p, pop) for p in proj.products], releases=releases(tmp_path, proj, "joint"),
        release_id="r1", report_dir=tmp_path / "reports",
    )  # fmt: skip
    pd.testing.assert_frame_equal(built["by_ward"].product.table, built["again"].product.table)
    old = built["legacy"].product.table.replace({"area": {"area not known": "not known"}})
    new = built["by_ward_partners"].product.table
    old = old.assign(partners=old.partners.astype(str)).sort_values(["area", "partners"])
    new = new.sort_values(["council.ward", "partners"])
    assert old["count"].tolist() == new["count"].tolist()
    assert old["suppressed"].tolist() == new["suppressed"].tolist()
