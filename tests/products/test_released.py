"""read_released_counts: a released product CSV read back as areas by number of partners."""

from __future__ import annotations

from pathlib import Path

import pytest

from oda_fed.products import ProductError, ProductTable, read_released_counts, write_product


def test_a_written_product_reads_back_as_areas_by_partner_count(
    controlled_product: ProductTable, tmp_path: Path
) -> None:
    released = read_released_counts(write_product(controlled_product, tmp_path)["csv"])
    assert list(released.table.columns) == [1, 2, 3]
    assert released.table.to_dict("index") == {
        "W1": {1: "suppressed", 2: "suppressed", 3: "suppressed"},
        "W2": {1: "suppressed", 2: "suppressed", 3: "suppressed"},
        "area not known": {1: "2", 2: "suppressed", 3: "suppressed"},
    }
    assert (released.cells, released.suppressed_cells) == (9, 8)


def test_a_published_zero_stays_a_zero(exact_product: ProductTable, tmp_path: Path) -> None:
    released = read_released_counts(write_product(exact_product, tmp_path)["csv"])
    assert released.table.loc["W2", 3] == "0"
    assert released.suppressed_cells == 0


def test_the_word_suppressed_in_the_count_and_missing_cells(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "area,partners,count,suppressed\nW1,1,suppressed,false\nW1,10,25,false\nW2,2,5,false\n"
    )
    released = read_released_counts(path)
    assert list(released.table.columns) == [1, 2, 10]  # numeric order, not text order
    assert released.table.loc["W1"].tolist() == ["suppressed", "", "25"]
    assert released.suppressed_cells == 1


def test_a_file_that_is_not_a_product_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "links.csv"
    path.write_text("entity_id,source,record_id,score\n")
    with pytest.raises(ProductError, match="lacks"):
        read_released_counts(path)
