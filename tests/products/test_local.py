"""``local`` products: a partner's own records tabulated and controlled as any table is, checked
against a count by hand; and the coordinator's check of a table a node sends, which refuses one
the node did not control."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from oda_fed.config import Project
from oda_fed.products.crosstab import NOT_KNOWN, ProductError
from oda_fed.products.local import build_local, received_table, table_cells
from oda_fed.products.releases import Releases

PROJECT = {
    "name": "local",
    "title": "Local",
    "purpose": "test",
    "legal_gateway": "test",
    "partners": [{"id": "council", "name": "Council"}, {"id": "police", "name": "Police"}],
    "linkage": {"fields": [{"name": "last_name", "type": "name"}]},
    "attributes": [
        {"name": "ward", "partner": "council", "domain": {"codes": ["W1", "W2", "W3"]}},
        {"name": "tenure", "partner": "council", "domain": {"codes": ["own", "rent"]}},
        {"name": "beat", "partner": "police", "domain": {"pattern": "B[0-9]"}},
    ],
    "products": [
        {
            "id": "caseload",
            "kind": "local",
            "title": "The council's caseload by ward",
            "owner": "council",
            "by": ["council.ward"],
            "recipients": ["council", "police"],
        },
        {
            "id": "caseload_by_tenure",
            "kind": "local",
            "title": "The council's caseload by ward and tenure",
            "owner": "council",
            "by": ["council.ward", "council.tenure"],
            "recipients": ["police"],
        },
        {
            "id": "beats",
            "kind": "local",
            "title": "Police records by beat",
            "owner": "police",
            "by": ["police.beat"],
            "recipients": ["council"],
        },
    ],
    "disclosure": {"min_cell": 5, "rounding_base": 5},
}


@pytest.fixture
def project() -> Project:
    return Project.model_validate(PROJECT)


def _records(n: int, seed: int = 3) -> tuple[list[str], dict[str, list[str]]]:
    rng = np.random.default_rng(seed)
    ward = rng.choice(["W1", "W2", "W3", ""], size=n, p=[0.5, 0.3, 0.17, 0.03]).tolist()
    tenure = rng.choice(["own", "rent"], size=n, p=[0.9, 0.1]).tolist()
    return [f"r{i}" for i in range(n)], {"ward": ward, "tenure": tenure}


def _releases(tmp_path: Path, project: Project) -> Releases:
    return Releases.in_folder(tmp_path / "state", project, name="t")


def test_a_local_table_counts_the_owners_records_as_a_count_by_hand_does(
    tmp_path: Path, project: Project
) -> None:
    ids, values = _records(400)
    built = build_local(
        project, "council", record_ids=ids, values=values,
        releases=_releases(tmp_path, project), release_id="r1", report_dir=tmp_path / "reports",
    )  # fmt: skip
    assert sorted(built) == ["caseload", "caseload_by_tenure"]  # the police's is not the council's
    truth = Counter(
        (w or NOT_KNOWN, t) for w, t in zip(values["ward"], values["tenure"], strict=True)
    )
    by_ward = Counter(w or NOT_KNOWN for w in values["ward"])
    for coordinates, count in table_cells(built["caseload"].product):
        true = by_ward[coordinates[0]]
        if count is None:
            continue
        assert true >= 5 and count % 5 == 0 and abs(count - true) < 5, coordinates
    cells = table_cells(built["caseload_by_tenure"].product)
    assert len(cells) == 4 * 3  # every ward (and not known) by every tenure (and not known)
    for (ward, tenure), count in cells:
        true = truth[(ward, tenure)]
        if true < 5:
            assert count is None, (ward, tenure)  # primary suppression
        elif count is not None:
            assert count % 5 == 0 and abs(count - true) < 5


def test_two_local_tables_of_one_owner_are_controlled_together(tmp_path: Path) -> None:
    """The attack: a ward's row by tenure has one small cell, and the ward's total is published
    by the other table. Controlled apart (and unrounded, to make it plain), the row's suppressed
    cells add up to the total less its published cell, 3; controlled together, that cell goes
    too."""
    project = Project.model_validate({**PROJECT, "disclosure": {"min_cell": 5, "rounding_base": 1}})
    ids = [f"r{i}" for i in range(60)]
    values = {"ward": ["W1"] * 60, "tenure": ["own"] * 57 + ["rent"] * 3}

    def recovered(tables: dict) -> int | None:
        row = {
            tenure: count
            for (ward, tenure), count in table_cells(tables["caseload_by_tenure"].product)
            if ward == "W1"
        }
        total = dict(table_cells(tables["caseload"].product))[("W1",)]
        assert row["rent"] is None and row["not known"] is None
        if total is None or row["own"] is None:
            return None
        return total - row["own"]  # the ward's suppressed cells together

    apart = {}
    for i, prod in enumerate(project.products[:2]):
        one = Project.model_validate({**PROJECT, "disclosure": project.disclosure.model_dump(),
                                      "products": [PROJECT["products"][i]]})  # fmt: skip
        apart |= build_local(
            one, "council", record_ids=ids, values=values,
            releases=_releases(tmp_path / prod.id, one), release_id="r1",
            report_dir=tmp_path / "reports",
        )  # fmt: skip
    assert recovered(apart) == 3
    together = build_local(
        project, "council", record_ids=ids, values=values,
        releases=_releases(tmp_path, project), release_id="r1", report_dir=tmp_path / "reports",
    )  # fmt: skip
    assert recovered(together) is None


def _cells(project: Project, tmp_path: Path) -> list:
    ids, values = _records(400)
    built = build_local(
        project, "council", record_ids=ids, values=values,
        releases=_releases(tmp_path, project), release_id="r1", report_dir=tmp_path / "reports",
    )  # fmt: skip
    return table_cells(built["caseload"].product)


def test_the_coordinator_keeps_a_controlled_table_as_it_was_sent(
    tmp_path: Path, project: Project
) -> None:
    cells = _cells(project, tmp_path)
    table = received_table(project, project.product("caseload"), cells)
    assert table_cells(table) == cells
    assert table.suppressed_cells == sum(1 for _, c in cells if c is None)


def _replaced(cells: list, at: int, cell: tuple) -> list:
    return [cell if i == at else c for i, c in enumerate(cells)]


@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        (lambda cells: _replaced(cells, 0, (cells[0][0], 3)), "below min_cell 5"),
        (lambda cells: _replaced(cells, 0, (cells[0][0], 12)), "not rounded"),
        (lambda cells: cells[1:], "every combination"),
        (lambda cells: [*cells, cells[0]], "repeat a combination"),
        (lambda cells: _replaced(cells, 0, (("Smith",), 10)), "does not list"),
        (lambda cells: _replaced(cells, 0, (("W1", "own"), 10)), "one value for each"),
        (lambda cells: [], "no cells"),
    ],
)
def test_a_table_its_node_did_not_control_is_refused(
    tmp_path: Path, project: Project, tamper, said: str
) -> None:
    cells = tamper(_cells(project, tmp_path))
    with pytest.raises(ProductError, match=said):
        received_table(project, project.product("caseload"), cells)


def test_values_of_a_dimension_with_no_code_list_must_match_its_domain(project: Project) -> None:
    beats = project.product("beats")
    good = [(("B1",), 10), (("B2",), None), ((NOT_KNOWN,), None)]
    assert received_table(project, beats, good).suppressed_cells == 2
    with pytest.raises(ProductError, match="outside the domain"):
        received_table(project, beats, [(("Jones",), 10), ((NOT_KNOWN,), None)])
    with pytest.raises(ProductError, match="every combination"):
        received_table(project, beats, [(("B1",), 10)])  # its "not known" row is missing
